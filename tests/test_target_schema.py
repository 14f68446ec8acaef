"""core/target.py, the one reader of a shipped target folder, on small hand-made folders (no build):
what it refuses, in one line each, and that no other module reads the reports itself."""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from voxc.core import target as schema
from voxc.core.errors import VoxcError
from voxc.core.hashing import sha256_bytes

ROOT = Path(__file__).resolve().parent.parent
STREAM = {"graph": "vocoder", "input": "mel", "output": "waveform", "hop": 256, "chunk": 64, "first": 16,
          "context": 8, "min_len": 8, "radius": 6, "passed": True}


def _row(passed=True, **kw) -> dict:
    return {"model": "vocoder", "runtime": "onnxruntime", "precision": "fp32", "batch": 1, "length": 8,
            "output": "waveform", "metric": "snr_db", "value": 40.0, "tolerance": 20.0, "passed": passed, **kw}


def _entry(folder: Path, rel: str, data: bytes, **kw) -> dict:
    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
    (folder / rel).write_bytes(data)
    return {"path": rel, "sha256": sha256_bytes(data), "bytes": len(data), **kw}


def make_target(folder: Path, rows=None, status="pass", passed=True, stream=None, edit=None) -> Path:
    """A minimal target folder written through the schema's writer (root record included)."""
    folder.mkdir(parents=True, exist_ok=True)
    art = _entry(folder, "vocoder/vocoder.onnxruntime-fp32.onnx", b"onnx bytes", role="model",
                 runtime="onnxruntime", precision="fp32", format="onnx")
    ref = _entry(folder, "vocoder/reference.safetensors", b"weights", role="reference")
    manifest = {"target": folder.name, "preset": "tiny", "family": "voxc", "profile": {"backends": ["onnxruntime"]},
                "preset_config": {}, "models": {"vocoder": {"artifacts": [art], "reference": ref, "config": {},
                                                            "inputs": [], "outputs": [], "parity": "pass"}}}
    if edit:
        edit(manifest, folder)
    chain = {"passed": True, "runtimes": {"onnxruntime": {"stream": {**STREAM, **(stream or {})}}}}
    parity = {"target": folder.name, "passed": passed, "status": status, "chain": chain,
              "results": rows if rows is not None else [_row()]}
    schema.write_reports(folder, manifest, parity, "# report\n")
    return folder


def refused(folder: Path, message: str) -> str:
    with pytest.raises(VoxcError) as e:
        schema.read(folder)
    text = str(e.value)
    assert message in text and "\n" not in text, text
    return text


def test_a_clean_folder_reads_back_typed(tmp_path):
    shipped = schema.read(make_target(tmp_path / "cpu"))
    a = shipped.manifest.models["vocoder"].runnable()[0]
    assert a.role == "model" and a.runtime == "onnxruntime" and shipped.parity.status == "pass"
    assert shipped.parity.streams()["onnxruntime"].chunk == 64


def _move_artifact(rel_of):
    def edit(manifest, folder):
        art = manifest["models"]["vocoder"]["artifacts"][0]
        art["path"] = rel_of(folder)
    return edit


def test_path_traversal_with_the_outside_files_hash_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.onnx").write_bytes(b"onnx bytes")            # same bytes, so the sha256 matches
    refused(make_target(tmp_path / "a" / "cpu", edit=_move_artifact(lambda f: "../../outside/evil.onnx")),
            "leaves its folder")


def test_an_absolute_path_is_refused(tmp_path):
    (tmp_path / "evil.onnx").write_bytes(b"onnx bytes")
    refused(make_target(tmp_path / "cpu", edit=_move_artifact(lambda f: str(tmp_path / "evil.onnx"))),
            "leaves its folder")


def test_a_symlinked_artifact_or_folder_is_refused(tmp_path):
    folder = make_target(tmp_path / "cpu")
    art = folder / "vocoder/vocoder.onnxruntime-fp32.onnx"
    (tmp_path / "copy.onnx").write_bytes(art.read_bytes())
    art.unlink()
    os.symlink(tmp_path / "copy.onnx", art)
    refused(folder, "is a symlink")
    folder2 = make_target(tmp_path / "b" / "cpu")
    os.rename(folder2 / "vocoder", tmp_path / "b" / "elsewhere")
    os.symlink(tmp_path / "b" / "elsewhere", folder2 / "vocoder")
    refused(folder2, "is a symlink")


def test_a_changed_verdict_or_stream_setting_is_an_altered_target(tmp_path):
    folder = make_target(tmp_path / "cpu", rows=[_row(passed=False)], status="fail", passed=False)
    doc = json.loads((folder / schema.PARITY).read_text())
    doc["results"][0]["passed"] = True           # a consistent report: only the root record can tell
    (folder / schema.PARITY).write_text(json.dumps({**doc, "status": "pass", "passed": True}))
    refused(folder, "does not match the sha256 its manifest records")
    folder = make_target(tmp_path / "b" / "cpu")
    doc = json.loads((folder / schema.PARITY).read_text())
    doc["chain"]["runtimes"]["onnxruntime"]["stream"].update(chunk=128, context=9)   # usable, but not what was gated
    (folder / schema.PARITY).write_text(json.dumps(doc))
    refused(folder, "does not match the sha256 its manifest records")


@pytest.mark.parametrize("stream, message", [
    ({"chunk": 0}, "chunk must be a positive number"),
    ({"first": 0}, "first must be a positive number"),
    ({"context": 2}, "below the graph's receptive radius"),
    ({"chunk": "64"}, "'chunk' must be an integer"),
])
def test_unusable_stream_settings_are_refused_even_when_consistently_hashed(tmp_path, stream, message):
    refused(make_target(tmp_path / "cpu", stream=stream), message)


def test_a_stream_without_its_keys_is_one_line_not_a_key_error(tmp_path):
    folder = make_target(tmp_path / "cpu")
    doc = json.loads((folder / schema.PARITY).read_text())
    del doc["chain"]["runtimes"]["onnxruntime"]["stream"]["graph"]
    manifest = json.loads((folder / schema.MANIFEST).read_text())
    schema.write_reports(folder, manifest, doc, "# report\n")
    refused(folder, "lacks 'graph'")


def test_a_pass_over_failing_rows_is_refused(tmp_path):
    refused(make_target(tmp_path / "cpu", rows=[_row(), _row(passed=False)]), "says pass but its rows say fail")


def _without_models(m):
    del m["models"]
    return m


def _art(m):
    return m["models"]["vocoder"]["artifacts"][0]


@pytest.mark.parametrize("damage, message", [
    (_without_models, "is not a voxc manifest"),
    (lambda m: [m], "is not a voxc manifest"),
    (lambda m: {**m, "models": {"vocoder": {**m["models"]["vocoder"], "artifacts": "x.onnx"}}},
     "'artifacts' must be a list"),
    (lambda m: (_art(m).pop("sha256"), m)[1], "lacks 'sha256'"),
    (lambda m: (_art(m).update(role="exe"), m)[1], "has role 'exe'"),
    (lambda m: {**m, "models": {"vocoder": {**m["models"]["vocoder"], "reference": 5}}}, "'reference' must be an object"),
])
def test_a_malformed_manifest_is_one_line(tmp_path, damage, message):
    folder = make_target(tmp_path / "cpu")
    manifest = damage(json.loads((folder / schema.MANIFEST).read_text()))
    (folder / schema.MANIFEST).write_text(json.dumps(manifest))
    refused(folder, message)


def test_a_non_utf8_manifest_is_one_line(tmp_path):
    folder = make_target(tmp_path / "cpu")
    (folder / schema.MANIFEST).write_bytes(b'{"target": "\xff\xfe"}')
    refused(folder, "is not readable JSON (UnicodeDecodeError)")


def test_the_writer_is_strict_json():
    text = schema.dumps({"value": float("nan"), "rows": [{"v": float("inf")}], "list": [float("-inf")]})
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))
    assert doc["value"] is None and doc["value_reason"] == "not finite (nan)" and doc["rows"][0]["v_reason"]


def test_a_target_that_is_a_symlink_leaves_no_old_link_behind(tmp_path):
    from voxc.compiler.build import place
    real = tmp_path / "real"
    make_target(real / "cpu")
    art = tmp_path / "art"
    art.mkdir()
    os.symlink(real / "cpu", art / "cpu")
    src = tmp_path / "src"
    make_target(src / "cpu")
    place(art, "cpu", [src / "cpu"])
    assert (art / "cpu").is_dir() and not (art / "cpu").is_symlink()
    assert not list(art.glob(".old-*")) and not list(art.glob(".tmp-*"))
    assert (real / "cpu" / schema.MANIFEST).is_file()           # the link's target is not touched


# ---- one reader: no other module names the reports' files ----------------------------------------

# The calibration data set has a manifest.json of its own (file hashes of the corpus), not a target's.
ALLOWED = {"core/target.py": "the schema module itself",
           "calibration/sets.py": "the calibration data set's own manifest, not a target folder",
           "calibration/corpus.py": "writes the calibration data set's manifest, not a target folder"}
NAMES = (schema.MANIFEST, schema.PARITY)


def report_file_mentions(path: Path) -> list[str]:
    """String constants (docstrings aside) naming a target report file: what a direct read or write needs."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            v = node.value.strip()
            if any(v == n or v.endswith("/" + n) for n in NAMES):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {v!r}")
    return found


def source_files() -> list[Path]:
    packages = ("core", "models", "compiler", "targets", "calibration", "voice", "voxc")   # pyproject's package-dir
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def test_no_module_but_the_schema_reads_or_writes_manifest_or_parity_json():
    found = [m for p in source_files() if str(p.relative_to(ROOT)) not in ALLOWED for m in report_file_mentions(p)]
    assert found == [], found


def test_the_source_walk_catches_a_direct_read(tmp_path, monkeypatch):
    bad = ROOT / "compiler" / "_probe_direct_read.py"
    bad.write_text('import json\n\n\ndef f(folder):\n    return json.loads((folder / "parity.json").read_text())\n')
    try:
        assert report_file_mentions(bad) == [f"compiler/_probe_direct_read.py:5: 'parity.json'"]
    finally:
        bad.unlink()
