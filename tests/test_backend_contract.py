"""The backend contract holds: backends are classes only (no module-level build/runner twins), every
backend's build record declares its files' roles and format, and nothing outside targets/ names a
backend, sniffs an artifact's file extension or reaches into another package's private names."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from voxc.targets import BACKENDS, backend
from voxc.targets.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE_TARGETS = ("compiler", "calibration", "models", "core")
PACKAGES = ("core", "models", "targets", "calibration", "compiler", "voice", "voxc")
# file extensions of what backends write: only targets/ may look at them
ARTIFACT_EXTENSIONS = {".onnx", ".bin", ".xml", ".mlpackage", ".mlmodelc", ".engine", ".plan", ".trt"}
# strings equal to a backend name that name something else: DNSMOS's model runs on the onnxruntime package
NOT_A_BACKEND = {("core/perceptual.py", "onnxruntime")}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _docstrings(tree: ast.Module) -> set[int]:
    return {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def _files(folders) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def _literals(node) -> list[str]:
    """The string literals of an expression (a constant or a tuple/list/set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _literals(e)]
    return []


def extension_checks(tree: ast.Module) -> list[str]:
    """Artifact extensions a module tests a name against: x.endswith(".onnx"), p.suffix == ".bin", ..."""
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("endswith", "removesuffix"):
            found += [s for a in n.args for s in _literals(a)]
        elif isinstance(n, ast.Compare):
            sides = [n.left, *n.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr in ("suffix", "suffixes") for s in sides):
                found += [s for side in sides for s in _literals(side)]
    return [s for s in found if s.lower() in ARTIFACT_EXTENSIONS]


def test_extension_check_finder_sees_the_forms_it_forbids():
    tree = ast.parse("a.endswith('.onnx')\nb.suffix == '.bin'\nc.endswith(('.xml', '.py'))\nd.endswith('.wav')\n")
    assert sorted(extension_checks(tree)) == [".bin", ".onnx", ".xml"]


def _declared_settings(tree: ast.Module) -> set[int]:
    """The runtime keys of a graph's declared `quantisation={runtime: {...}}` table: data, as a profile's
    [options.<runtime>] tables are, not a branch on a backend."""
    return {id(k) for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg == "quantisation"
            and isinstance(n.value, ast.Dict) for k in n.value.keys if k is not None}


def test_no_backend_name_or_artifact_extension_check_outside_targets():
    names = set(BACKENDS)
    problems = []
    for p in _files(OUTSIDE_TARGETS):
        rel = p.relative_to(ROOT).as_posix()
        tree = _tree(p)
        docs = _docstrings(tree) | _declared_settings(tree)
        named = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                 and id(n) not in docs and n.value in names and (rel, n.value) not in NOT_A_BACKEND}
        problems += [f"{rel} names backend {s!r}" for s in sorted(named)]
        problems += [f"{rel} checks the extension {s!r}" for s in extension_checks(tree)]
    assert not problems, problems


def _private_reaches(path: Path, package: str) -> list[str]:
    """`_name` taken from another voxc package: `from voxc.x.y import _name`, or `m._name` where m is an
    imported voxc module of another package (dunder names are not private)."""
    tree = _tree(path)
    modules: dict[str, str] = {}             # local name -> voxc module it is bound to
    hits = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 and n.module.startswith("voxc."):
            for a in n.names:
                full = f"{n.module}.{a.name}"
                if importlib.util.find_spec(n.module) is not None and _is_module(full):
                    modules[a.asname or a.name] = full
                elif a.name.startswith("_") and not a.name.startswith("__") and _package(n.module) != package:
                    hits.append(f"{n.module}.{a.name}")
        elif isinstance(n, ast.Import):
            for a in n.names:
                if a.name.startswith("voxc.") and a.asname:
                    modules[a.asname] = a.name
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in modules \
                and n.attr.startswith("_") and not n.attr.startswith("__") \
                and _package(modules[n.value.id]) != package:
            hits.append(f"{modules[n.value.id]}.{n.attr}")
    return hits


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _package(module: str) -> str:
    """voxc.targets.onnxruntime -> voxc.targets; the top-level voxc package's own modules -> voxc."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and parts[1] in PACKAGES[:-1] else "voxc"


def test_no_private_name_is_reached_across_packages():
    problems = []
    for folder in PACKAGES:
        package = "voxc" if folder == "voxc" else f"voxc.{folder}"
        for p in _files([folder]):
            problems += [f"{p.relative_to(ROOT).as_posix()}: {h}" for h in _private_reaches(p, package)]
    assert not problems, problems


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backends_are_classes_only(name):
    module = importlib.import_module(BACKENDS[name].partition(":")[0])
    twins = [f for f in ("build", "runner", "open") if callable(getattr(module, f, None))
             and not isinstance(getattr(module, f), type)]
    assert not twins, f"{module.__name__} has module-level {twins}: the Backend class is the one API"
    be = backend(name)
    assert be.open.__annotations__.get("return") in (Runner, "Runner"), "open() -> Runner"


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_records_declare_roles_and_format(name):
    be = backend(name)
    assert be.format and be.roles, name
    roles = list(be.roles.values())
    assert set(roles) <= {"model", "weights", "package", "config"}
    assert roles.count("model") + roles.count("package") == 1
    record = be.record("fp32")
    assert record["roles"] == be.roles and record["format"] == be.format and record["runtime"] == name
    assert record["file"] in be.roles and record["files"] == list(be.roles)


def test_gate_libraries_key_exactly_the_stages_that_judge(monkeypatch):
    """Tool versions come from what a stage imports: a new pesq re-runs parity and chained parity only;
    PyTorch keys the int8 stage (it runs the reference modules for calibration feeds)."""
    from voxc.compiler import graph
    from voxc.compiler.build import BuildRequest, plan
    from voxc.models.voxc.presets import preset
    from voxc.targets import profiles
    req = BuildRequest(target="cpu", preset=preset("tiny"))
    g, _ = plan(req, profiles.load("cpu"))
    before = {label: s.fingerprint() for label, s in g.stages.items()}
    int8 = next(s for label, s in g.stages.items() if label.endswith("/onnxruntime-int8"))
    assert "torch" in int8.all_tools()
    parity = next(s for label, s in g.stages.items() if label.endswith("/parity"))
    assert {"pesq", "pystoi", "speechmos", "scipy", "numpy"} <= set(parity.all_tools())
    real = graph.version
    monkeypatch.setattr(graph, "version", lambda t: "9.9.9" if t == "pesq" else real(t))
    changed = {label for label, s in g.stages.items() if s.fingerprint() != before[label]}
    assert changed and all(label.endswith(("/parity", "/chain")) for label in changed), sorted(changed)
    assert {label for label in before if label.endswith("/parity") or label.endswith("/chain")} == changed


def test_portable_is_a_property_not_a_string_filter():
    """The plain fp32 ONNX is told apart through core.target (PORTABLE, FileRecord.portable, portable()):
    no other module spells the label."""
    spelled = [p.relative_to(ROOT).as_posix() for p in _files(OUTSIDE_TARGETS + ("targets",))
               if p.relative_to(ROOT).as_posix() != "core/target.py"
               and any(isinstance(n, ast.Constant) and n.value == "portable" for n in ast.walk(_tree(p)))]
    assert spelled == []
