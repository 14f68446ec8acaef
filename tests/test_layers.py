"""The code's layers: no import cycle, the bottom layer imports nothing above it, models/ imports
neither compiler/ nor targets/, targets/ knows compiler/ only by its contract, and compiler/ never
names a backend (or a graph of a family) outside the registries; stage keys follow the code they run."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from voxc.core import sources

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"core": "voxc.core", "models": "voxc.models", "targets": "voxc.targets", "calibration": "voxc.calibration",
          "compiler": "voxc.compiler", "voice": "voxc.voice", "voxc": "voxc"}


def all_modules() -> list[str]:
    out = []
    for folder, package in LAYERS.items():
        for p in sorted((ROOT / folder).rglob("*.py")):
            rel = p.relative_to(ROOT / folder).with_suffix("")
            parts = [x for x in rel.parts if x != "__init__"]
            out.append(".".join([package, *parts]))
    return out


def test_no_import_cycle():
    graph = {m: [d for d in sources.direct_imports(m) if d != m] for m in all_modules()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, path):
        state[m] = 1
        for d in graph.get(d_ := m, []) if False else graph.get(m, []):
            if state.get(d) == 1:
                cycles.append(path[path.index(d):] + [d] if d in path else [m, d])
            elif d in graph and state.get(d) is None:
                visit(d, path + [d])
        state[m] = 2
    for m in graph:
        if state.get(m) is None:
            visit(m, [m])
    assert not cycles, f"import cycles: {cycles[:3]}"


@pytest.mark.parametrize("layer, forbidden", [
    ("voxc.core", ("voxc.models", "voxc.compiler", "voxc.targets", "voxc.calibration", "voxc.voice")),
    ("voxc.models", ("voxc.compiler", "voxc.targets", "voxc.calibration", "voxc.voice")),
    ("voxc.targets", ("voxc.compiler", "voxc.voice", "voxc.calibration")),
    ("voxc.calibration", ("voxc.compiler", "voxc.voice")),
    ("voxc.compiler", ("voxc.voice",)),
    ("voxc.voice", ("voxc.compiler",)),
])
def test_layers_import_only_downwards(layer, forbidden):
    bad = [(m, d) for m in all_modules() if m.startswith(layer)
           for d in sources.direct_imports(m) if d.startswith(forbidden)]
    assert not bad, bad


def test_the_bottom_layer_is_numpy_only():
    for m in all_modules():
        if m.startswith("voxc.core"):
            text = sources.module_file(m).read_text()
            for name in ("torch", "onnx", "scipy", "safetensors"):   # (onnxruntime is a device runtime)
                assert not re.search(rf"import {name}\b", text), (m, name)


def _strings(path: Path) -> list[str]:
    """String constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def test_compiler_never_imports_the_top_level_package():
    top = {m for m in all_modules() if m == "voxc" or m.count(".") == 1 and m.split(".")[1] not in LAYERS}
    bad = [(m, d) for m in all_modules() if m.startswith("voxc.compiler")
           for d in sources.direct_imports(m) if d in top]
    assert not bad, bad


def test_compiler_and_calibration_name_no_backend_and_no_graph():
    from voxc.models.family import family, registry
    from voxc.targets import BACKENDS
    names = set(BACKENDS) | {g for name in registry() for g in family(name).graph_names}
    for folder in ("compiler", "calibration"):
        for p in (ROOT / folder).glob("*.py"):
            hits = [s for s in _strings(p) for n in names if n in s]
            assert not hits, f"{p.relative_to(ROOT)} names {hits[:3]}"


def _sources() -> list[Path]:
    return sorted(p for folder in LAYERS for p in (ROOT / folder).rglob("*.py"))


def test_one_sha256_and_one_atomic_write_helper():
    hashing = [p for p in _sources() if "hashlib.sha256" in p.read_text()]
    assert [p.relative_to(ROOT).as_posix() for p in hashing] == ["core/hashing.py"]
    replacing = [p for p in _sources() if "os.replace(" in p.read_text()]
    assert [p.relative_to(ROOT).as_posix() for p in replacing] == ["core/atomic.py"]


def test_editing_a_backend_invalidates_exactly_the_stages_that_run_it(monkeypatch):
    from voxc.compiler.build import BuildRequest, plan
    from voxc.models.voxc.presets import preset
    from voxc.targets import profiles
    req = BuildRequest(target="cpu", preset=preset("tiny"))

    def fingerprints():
        g, _ = plan(req, profiles.load("cpu"))
        return {label: s.fingerprint() for label, s in g.stages.items()}
    before = fingerprints()
    real = sources.read_source
    monkeypatch.setattr(sources, "read_source",
                        lambda p: real(p) + (b"\nINT8_DEFAULTS['reduce_range'] = False\n"
                                             if p.as_posix().endswith("targets/onnxruntime.py") else b""))
    after = fingerprints()
    changed = {label for label in before if before[label] != after[label]}
    expected = {label for label in before if "/onnxruntime" in label}     # its artifacts, parity, select, chain
    assert changed == expected and "target/onnxruntime/chain" in changed
    assert not any(label.endswith(("/weights", "/export", "/check", "/simplify")) or "/openvino" in label
                   for label in changed)
