"""apple and jetson targets end to end at the tiny preset: deferred parity, bundles, the torch-free
verifier on the ONNX Runtime stand-in, tamper and wrong-golden detection, merge, chunked vocoding."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from voxc.cli import main
from voxc.core.hashing import sha256_file
from voxc.models.family import family, model_spec
from voxc.targets import backend, coreml, split
from voxc.targets.ort_runner import OrtRunner as ort_runner

pytestmark = pytest.mark.slow

MODEL_NAMES = family("voxc").graph_names


@pytest.fixture(scope="session")
def device_builds(tiny_build, tmp_path_factory):
    """apple and jetson built into the cpu build's artifacts folder (exports come from its cache)."""
    from voxc.compiler.build import BuildRequest, build
    from voxc.models.voxc.presets import preset
    logs = {}
    for target in ("apple", "jetson"):
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert build(BuildRequest(target=target, preset=preset("tiny"), preset_name="tiny", artifacts=tiny_build,
                                      jobs=2))
        logs[target] = buf.getvalue()
    return tiny_build, logs


@pytest.fixture(scope="session")
def numpy_only_path(tmp_path_factory) -> Path:
    """A sys.path entry that offers numpy and onnxruntime and nothing else (no torch)."""
    import numpy
    import onnxruntime
    site = Path(numpy.__file__).parent.parent
    d = tmp_path_factory.mktemp("numpy_only")
    for name in ("numpy", "numpy.libs", "onnxruntime"):
        if (site / name).exists():
            os.symlink(site / name, d / name)
    assert Path(onnxruntime.__file__).parent.parent == site
    return d


def run_verifier(bundle: Path, numpy_only: Path, *args: str) -> subprocess.CompletedProcess:
    """verify.py in an isolated interpreter (-I -S: no site-packages) that can import numpy and ORT only."""
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1));\n"
            "try:\n import torch; raise SystemExit('torch must not be importable here')\n"
            "except ImportError: pass\n"
            "import runpy; sys.argv[0] = 'verify.py'; runpy.run_path('verify.py', run_name='__main__')")
    return subprocess.run([sys.executable, "-I", "-S", "-c", code, str(numpy_only), *args], cwd=bundle,
                          capture_output=True, text=True, timeout=300)


def copy_bundle(artifacts: Path, target: str, tmp_path: Path) -> Path:
    dst = tmp_path / f"bundle-{target}"
    shutil.copytree(artifacts / target / "bundle", dst)
    return dst


@pytest.mark.parametrize("target,runtime,reason", [
    ("apple", "coreml", "parity deferred: Core ML runs only on macOS"),
    ("jetson", "tensorrt", "parity deferred: TensorRT engines for this target are built and checked on the device")])
def test_host_build_defers_device_parity_and_writes_a_bundle(device_builds, target, runtime, reason):
    artifacts, logs = device_builds
    assert reason in logs[target]
    folder = artifacts / target
    p = json.loads((folder / "parity.json").read_text())
    assert p["passed"] is True and p["status"] == "deferred"
    dev = [r for r in p["results"] if r["runtime"] == runtime]
    assert dev and all(r["status"] == "deferred" and r["passed"] is None for r in dev if r["metric"] == "device_parity")
    assert not any(r["passed"] is None for r in p["results"] if r.get("status") != "deferred")
    assert "DEVICE PARITY DEFERRED" in (folder / "parity.md").read_text()
    m = json.loads((folder / "manifest.json").read_text())
    assert {i["parity"] for i in m["models"].values()} == {"deferred"}
    b = m["bundle"]
    assert (folder / b["tarball"]).is_file() and sha256_file(folder / b["tarball"]) == b["tarball_sha256"]
    bm = json.loads((folder / "bundle" / "manifest.json").read_text())
    assert sha256_file(folder / "bundle" / "manifest.json") == b["id"] and bm["runtime"] == runtime
    assert set(bm["models"]) == set(MODEL_NAMES)
    for rel, info in bm["files"].items():
        assert sha256_file(folder / "bundle" / rel) == info["sha256"]
    listed = {str(p.relative_to(folder / "bundle")) for p in (folder / "bundle").rglob("*") if p.is_file()}
    assert listed == set(bm["files"]) | {"manifest.json"}
    assert "lib/voxc/core/metrics.py" in bm["files"] and "lib/voxc/core/gates.py" in bm["files"]
    assert (folder / "bundle" / "lib/voxc/core/metrics.py").read_bytes() == Path("core/metrics.py").read_bytes()
    for name, model in bm["models"].items():
        with np.load(folder / "bundle" / model["golden"]) as z:
            assert len(z.files) == len(model["points"]) * (len(model["inputs"]) + len(model["outputs"]))


def test_tensorrt_rows_on_the_host_check_the_exact_onnx_handed_to_tensorrt(device_builds):
    artifacts, _ = device_builds
    rows = json.loads((artifacts / "jetson" / "parity.json").read_text())["results"]
    host = [r for r in rows if r.get("checked") == "onnx for tensorrt"]
    assert {r["model"] for r in host} == set(MODEL_NAMES) and all(r["passed"] for r in host)
    bm = json.loads((artifacts / "jetson" / "bundle" / "manifest.json").read_text())
    art = bm["models"]["vocoder"]["artifacts"][0]
    assert art["recipe"]["workspace_mb"] == 512 and art["recipe"]["regime"] == "auto"
    assert len(art["profiles"]) > 1 and art["profiles"][-1]["ranges"]["frames"][2] == 384


def test_core_ml_packages_match_their_specs_and_carry_metadata(device_builds, tiny_cfg):
    artifacts, _ = device_builds
    m = json.loads((artifacts / "apple" / "manifest.json").read_text())
    for name in MODEL_NAMES:
        art = [a for a in m["models"][name]["artifacts"] if a["runtime"] == "coreml"][0]
        assert art["format"] == "mlpackage" and art["precision"] == ("fp32" if name == "vocoder" else "fp16")
        assert coreml.check_package(model_spec(name, tiny_cfg), artifacts / "apple" / art["path"]) == []
    summary = coreml.op_summary(artifacts / "apple" / "vocoder" / "vocoder.coreml-fp32.mlpackage")
    assert summary["ops_total"] > 10 and summary["fp16_ops"] == 0
    assert coreml.op_summary(artifacts / "apple" / "acoustic_decoder" / "acoustic_decoder.coreml-fp16.mlpackage")["fp16_ops"] > 0


def test_core_ml_spec_gate_rejects_a_package_built_for_other_ranges(device_builds, tiny_cfg):
    artifacts, _ = device_builds
    wider = {**tiny_cfg, "dims": {**tiny_cfg["dims"], "frames": [8, 96, 40, 512]}}
    problems = coreml.check_package(model_spec("vocoder", wider), artifacts / "apple" / "vocoder" / "vocoder.coreml-fp32.mlpackage")
    assert any("range [8, 384] != spec frames [8, 512]" in p for p in problems)


def test_core_ml_prediction_on_a_mac(device_builds, tiny_cfg):
    if platform.system() != "Darwin":
        pytest.skip("needs macOS: Core ML predictions run only on macOS")
    artifacts, _ = device_builds
    spec = model_spec("vocoder", tiny_cfg)
    out = backend("coreml").open(artifacts / "apple" / "vocoder" / "vocoder.coreml-fp32.mlpackage").infer(spec.example_inputs())
    assert out["waveform"].shape[-1] == spec.dims["frames"].export * 256


@pytest.mark.parametrize("target", ["apple", "jetson"])
def test_verifier_round_trip_on_the_onnxruntime_stand_in_without_torch(device_builds, numpy_only_path, tmp_path, target):
    artifacts, _ = device_builds
    with tarfile.open(artifacts / target / f"voxc-{target}-bundle.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    bundle = tmp_path / f"voxc-{target}-bundle"
    res = run_verifier(bundle, numpy_only_path, "--runner", "onnxruntime", "--out", str(tmp_path / "dev.json"))
    assert res.returncode == 0, res.stderr + res.stdout
    dev = json.loads((tmp_path / "dev.json").read_text())
    assert dev["passed"] and dev["stand_in"] and dev["runner"] == "onnxruntime"
    assert dev["bundle"] == json.loads((artifacts / target / "manifest.json").read_text())["bundle"]["id"]
    assert {r["model"] for r in dev["results"]} == set(MODEL_NAMES)
    assert main(["report", "--target", target, "--artifacts", str(artifacts), "--merge", str(tmp_path / "dev.json")]) == 0
    p = json.loads((artifacts / target / "parity.json").read_text())
    assert p["status"] == "deferred"                          # a stand-in proves the bundle, not the device
    assert any(r.get("site") == "device" and r["runtime"] == "onnxruntime-standin" for r in p["results"])
    assert main(["report", "--target", target, "--artifacts", str(artifacts), "--merge", str(tmp_path / "dev.json")]) == 0
    again = json.loads((artifacts / target / "parity.json").read_text())
    assert len(again["results"]) == len(p["results"])         # merging again replaces, never duplicates


def test_the_prepared_device_check_runs_a_bundle_and_advises_per_device(device_builds, tmp_path):
    """.ci/device-check (what a GPU host runs, no voxc install): unpacks the bundle, runs verify.py with the
    stand-in where TensorRT does not import, and leaves a result `--merge` takes; TensorRT's absence is
    answered with the Jetson's remedy on a Jetson bundle."""
    artifacts, _ = device_builds
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT imports here: the check would build engines (a GPU host's run)")
    script = Path(__file__).resolve().parents[1] / ".ci" / "device-check"
    res = subprocess.run([str(script), str(artifacts / "jetson" / "voxc-jetson-bundle.tar.gz"), str(tmp_path / "out")],
                         env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "the onnxruntime stand-in runs" in res.stdout
    dev = json.loads((tmp_path / "out" / "parity.json").read_text())
    assert dev["passed"] and dev["stand_in"] and {r["model"] for r in dev["results"]} == set(MODEL_NAMES)
    bundle = copy_bundle(artifacts, "jetson", tmp_path)
    res = subprocess.run([sys.executable, "verify.py", "--runner", "tensorrt", "--out", str(tmp_path / "t.json")],
                         cwd=bundle, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "JetPack's python3" in res.stderr and "tensorrt-cu12" not in res.stderr
    assert not (tmp_path / "t.json").exists()


def test_verifier_refuses_a_tampered_bundle(device_builds, numpy_only_path, tmp_path):
    artifacts, _ = device_builds
    bundle = copy_bundle(artifacts, "jetson", tmp_path)
    onnx_file = bundle / "models" / "vocoder" / "vocoder.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-20] ^= 0x01
    onnx_file.write_bytes(bytes(data))
    res = run_verifier(bundle, numpy_only_path, "--runner", "onnxruntime", "--out", str(tmp_path / "dev.json"))
    assert res.returncode == 2
    assert "models/vocoder/vocoder.onnx does not match its sha256" in res.stderr
    assert not (tmp_path / "dev.json").exists()


def test_verifier_fails_a_wrong_golden_output(device_builds, numpy_only_path, tmp_path):
    artifacts, _ = device_builds
    bundle = copy_bundle(artifacts, "apple", tmp_path)
    golden = bundle / "models" / "vocoder" / "golden.npz"
    with np.load(golden) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["p0.out.waveform"] = arrays["p0.out.waveform"] * 1.01     # a golden file that is wrong but re-hashed
    np.savez_compressed(golden, **arrays)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["models/vocoder/golden.npz"]["sha256"] = sha256_file(golden)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    res = run_verifier(bundle, numpy_only_path, "--runner", "onnxruntime", "--models", "vocoder",
                       "--out", str(tmp_path / "dev.json"))
    assert res.returncode == 1, res.stderr
    dev = json.loads((tmp_path / "dev.json").read_text())
    failed = [r for r in dev["results"] if not r["passed"]]
    assert failed and {r["output"] for r in failed} == {"waveform"} and {r["length"] for r in failed} == {8}


def _forged(artifacts: Path, standin: dict) -> dict:
    """The stand-in's result relabelled as TensorRT's: runner and rows renamed, stand_in false, and the
    hashes of the files a TensorRT runner loads copied from the bundle manifest into `judged`."""
    from voxc.targets.device_verify import judged_group
    bundle = json.loads((artifacts / "jetson" / "bundle" / "manifest.json").read_text())
    dev = json.loads(json.dumps(standin))
    dev.update(runner="tensorrt", stand_in=False)
    for r in dev["results"]:
        r["runtime"] = "tensorrt"
    for j in dev["judged"]:
        model = bundle["models"][j["model"]]
        art = next(a for a in model["artifacts"] if a["precision"] == j["precision"])
        j.update(runtime="tensorrt", files={rel: bundle["files"][rel]["sha256"]
                                            for rel in judged_group(bundle, model, art, "tensorrt")})
    return dev


def _as_device_result(artifacts: Path, standin: dict) -> dict:
    """What a TensorRT run of verify.py on a Jetson leaves (TensorRT cannot run here): the relabelled
    rows plus the runner's own evidence -- each engine plan's sha256, TensorRT version, GPU, compute
    capability."""
    dev = _forged(artifacts, standin)
    dev["device"].update(tensorrt="10.3.0", gpu="Orin (nvgpu)", compute_capability="8.7", l4t="36.4.0")
    for j in dev["judged"]:
        j["engine_sha256"] = hashlib.sha256(f"{j['model']}.{j['precision']}.engine".encode()).hexdigest()
    return dev


def _merge(artifacts: Path, dev: dict, path: Path) -> int:
    path.write_text(json.dumps(dev))
    return main(["report", "--target", "jetson", "--artifacts", str(artifacts), "--merge", str(path)])


@pytest.fixture(scope="module")
def standin_result(device_builds, numpy_only_path, tmp_path_factory) -> dict:
    artifacts, _ = device_builds
    out = tmp_path_factory.mktemp("standin") / "standin.json"
    res = run_verifier(artifacts / "jetson" / "bundle", numpy_only_path, "--runner", "onnxruntime", "--out", str(out))
    assert res.returncode == 0, res.stderr
    return json.loads(out.read_text())


def test_merge_replaces_deferred_rows_and_a_failing_device_fails_the_report(device_builds, standin_result, tmp_path, capsys):
    """The merge logic with device-shaped results (rows are the stand-in's, relabelled)."""
    artifacts, _ = device_builds
    dev = _as_device_result(artifacts, standin_result)
    assert _merge(artifacts, dev, tmp_path / "device.json") == 0
    p = json.loads((artifacts / "jetson" / "parity.json").read_text())
    assert p["status"] == "pass" and not any(r.get("status") == "deferred" for r in p["results"])
    m = json.loads((artifacts / "jetson" / "manifest.json").read_text())
    assert {i["parity"] for i in m["models"].values()} == {"pass"}
    assert m["device_parity"][-1]["judged"] == dev["judged"]              # the sha256 of what was judged
    bad = json.loads(json.dumps(dev))
    row = next(r for r in bad["results"] if r["metric"] == "rel_l2")
    row.update(value=row["tolerance"] * 10, passed=False)                # an honest failure on the device
    assert _merge(artifacts, bad, tmp_path / "bad.json") == 1
    assert json.loads((artifacts / "jetson" / "parity.json").read_text())["status"] == "fail"
    dev["bundle"] = "0" * 64
    capsys.readouterr()
    assert _merge(artifacts, dev, tmp_path / "other.json") == 2
    err = capsys.readouterr().err
    assert err.startswith("voxc: error:") and "was verified from bundle 000000000000" in err and err.count("\n") == 1
    (tmp_path / "junk.json").write_text("{}")
    assert main(["report", "--target", "jetson", "--artifacts", str(artifacts), "--merge", str(tmp_path / "junk.json")]) == 2


def test_a_merge_waits_for_a_writer_of_the_same_artifacts_folder(device_builds, standin_result, tmp_path, capsys):
    """A merge swaps the target folder through a .tmp-* copy beside it, and a build sweeps the .tmp-* of
    killed writers: the two must never overlap (CI once lost half a jetson folder to exactly this). While
    another writer holds the artifacts folder the merge waits and touches nothing; then it completes."""
    import threading
    from voxc.core.atomic import artifacts_lock
    artifacts, _ = device_builds
    dev = _as_device_result(artifacts, standin_result)
    before = folder_files(artifacts / "jetson")
    codes = []
    with artifacts_lock(artifacts):
        t = threading.Thread(target=lambda: codes.append(_merge(artifacts, dev, tmp_path / "device.json")))
        t.start()
        t.join(3)
        assert t.is_alive() and not codes                                   # waiting, not merging
        assert folder_files(artifacts / "jetson") == before
        assert not list(artifacts.glob(".tmp-jetson-*"))
    t.join(120)
    assert codes == [0]
    assert "another voxc process is writing to" in capsys.readouterr().out
    assert set(folder_files(artifacts / "jetson")) == set(before)           # every file still there


def folder_files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def _forge_flag(dev):
    row = next(r for r in dev["results"] if r["metric"] == "rel_l2")
    row.update(value=row["tolerance"] * 10, passed=True)


def _forge_budget(dev):
    for r in dev["results"]:
        if r["metric"] == "rel_l2":
            r["tolerance"] = 1e9


def _forge_model(dev):
    dev["results"].append({**dev["results"][0], "model": "nosuch"})


def _forge_precision(dev):
    dev["results"] = [{**r, "precision": "int4"} for r in dev["results"]]


def _forge_point(dev):
    dev["results"].append({**dev["results"][0], "length": 99999})


def _forge_partial(dev):
    first = dev["results"][0]
    dev["results"] = [r for r in dev["results"] if not (r["model"] == first["model"] and r["length"] == first["length"])]


def _forge_files(dev):
    rel = next(iter(dev["judged"][0]["files"]))
    dev["judged"][0]["files"][rel] = "f" * 64


def _forge_no_judged(dev):
    del dev["judged"]


@pytest.mark.parametrize("forge, message", [
    (_forge_flag, "but the row says otherwise"),
    (_forge_budget, "not the bundle's budget"),
    (_forge_model, "which this bundle does not contain"),
    (_forge_precision, "which this bundle does not contain"),
    (_forge_point, "outside the bundle's sweep"),
    (_forge_partial, "is incomplete"),
    (_forge_files, "do not match the bundle's sha256"),
    (_forge_no_judged, "does not say which files it judged"),
])
def test_a_forged_or_partial_device_result_is_refused(device_builds, standin_result, tmp_path, capsys, forge, message):
    artifacts, _ = device_builds
    before = (artifacts / "jetson" / "parity.json").read_bytes()
    dev = _as_device_result(artifacts, standin_result)
    forge(dev)
    capsys.readouterr()
    assert _merge(artifacts, dev, tmp_path / "forged.json") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("voxc: error:") and message in err[0], err
    assert (artifacts / "jetson" / "parity.json").read_bytes() == before


def test_chunked_vocoding_matches_one_pass(tiny_build, tiny_cfg):
    spec = model_spec("vocoder", tiny_cfg)
    r = ort_runner(tiny_build / "cpu" / "vocoder" / "vocoder.onnx")
    mel = spec.make_inputs(1, 300, np.random.default_rng(3))
    whole = r.infer(mel)["waveform"]
    calls = []

    def infer(feeds):
        calls.append(feeds["mel"].shape[2])
        assert feeds["mel"].shape[2] <= 96
        return r.infer(feeds)
    joined = split.chunked(infer, mel, {"mel": 2}, {"waveform": (2, 256)}, max_len=96, overlap=16)["waveform"]
    assert joined.shape == whole.shape and len(calls) == 4
    snr = 10 * np.log10(np.sum(whole.astype(np.float64) ** 2) / np.sum((joined - whole).astype(np.float64) ** 2))
    assert snr > 30, snr
    assert split.spans(300, 96, 16)[-1][1] == 300 and split.spans(50, 96, 16) == [(0, 50)]


@pytest.mark.parametrize("target, runtime", [("apple", "coreml"), ("jetson", "tensorrt")])
def test_bench_on_a_device_target_says_what_this_host_cannot_run(device_builds, target, runtime, capsys):
    from voxc.targets import backend
    artifacts, _ = device_builds
    why = backend(runtime).unavailable()
    if why is None:
        pytest.skip(f"{runtime} runs on this host")
    assert main(["bench", "--target", target, "--artifacts", str(artifacts), "--quick", "--runs", "2"]) == 0
    doc = json.loads((artifacts / target / "bench.json").read_text())
    assert doc["skipped"] == {runtime: why} and f"voxc: bench skips {runtime}: {why}" in capsys.readouterr().out
    assert {r["runtime"] for r in doc["results"]} <= {"torch", "onnxruntime"} and doc["results"]


def _forge_standin_as_tensorrt(dev):
    """Replaced whole by the stand-in relabelled without TensorRT's evidence (see the parametrize)."""


def _forge_duplicated(dev):
    dev["results"] = dev["results"] + [dict(r) for r in dev["results"]]


def _forge_no_engine(dev):
    del dev["judged"][0]["engine_sha256"]


@pytest.mark.parametrize("forge, message", [
    ("standin", "carries no tensorrt, gpu, compute_capability"),
    (_forge_duplicated, "appears twice"),
    (_forge_no_engine, "lacks engine_sha256"),
])
def test_device_results_not_bound_to_what_ran_are_refused(device_builds, standin_result, tmp_path, capsys,
                                                          forge, message):
    artifacts, _ = device_builds
    folder = artifacts / "jetson"
    before = {n: (folder / n).read_bytes() for n in ("parity.json", "manifest.json", "parity.md")}
    if forge == "standin":
        dev = _forged(artifacts, standin_result)
    else:
        dev = _as_device_result(artifacts, standin_result)
        forge(dev)
    capsys.readouterr()
    assert _merge(artifacts, dev, tmp_path / "forged.json") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("voxc: error:") and message in err[0], err
    assert {n: (folder / n).read_bytes() for n in before} == before


def test_merged_device_rows_survive_a_no_op_rebuild(device_builds, standin_result, tmp_path):
    from voxc.compiler.build import BuildRequest, build
    from voxc.models.voxc.presets import preset
    artifacts, _ = device_builds
    dev = _as_device_result(artifacts, standin_result)
    assert _merge(artifacts, dev, tmp_path / "device.json") == 0
    merged = json.loads((artifacts / "jetson" / "parity.json").read_text())
    device_rows = [r for r in merged["results"] if r.get("site") == "device"]
    assert merged["status"] == "pass" and device_rows
    assert build(BuildRequest(target="jetson", preset=preset("tiny"), preset_name="tiny", artifacts=artifacts, jobs=2))
    again = json.loads((artifacts / "jetson" / "parity.json").read_text())
    assert again["status"] == "pass" and [r for r in again["results"] if r.get("site") == "device"] == device_rows
    m = json.loads((artifacts / "jetson" / "manifest.json").read_text())
    assert m["device_parity"][-1]["runner"] == "tensorrt" and {i["parity"] for i in m["models"].values()} == {"pass"}
    import voxc
    assert voxc.open(artifacts / "jetson").status == "pass"


def test_every_json_a_device_build_writes_is_strict(device_builds, numpy_only_path, tmp_path):
    artifacts, _ = device_builds
    res = run_verifier(artifacts / "jetson" / "bundle", numpy_only_path, "--runner", "onnxruntime",
                       "--out", str(tmp_path / "dev.json"))
    assert res.returncode == 0, res.stderr
    files = [p for t in ("jetson", "apple") for p in (artifacts / t).rglob("*.json")] + [tmp_path / "dev.json"]
    files += [p for p in (artifacts / "cache").glob("*/stage.json")]
    for p in files:
        json.loads(p.read_text(), parse_constant=lambda c: pytest.fail(f"{p}: {c} is not JSON"))


@pytest.mark.parametrize("args, message", [
    (["--out", "/nonexistent/dir/p.json"], "the folder /nonexistent/dir does not exist"),
])
def test_verifier_bad_arguments_are_one_line(device_builds, numpy_only_path, tmp_path, args, message):
    artifacts, _ = device_builds
    res = run_verifier(artifacts / "jetson" / "bundle", numpy_only_path, "--runner", "onnxruntime", *args)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and message in err[0] and "Traceback" not in res.stderr, res.stderr


def test_verifier_refuses_a_golden_path_outside_the_bundle(device_builds, numpy_only_path, tmp_path):
    artifacts, _ = device_builds
    bundle = copy_bundle(artifacts, "jetson", tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    shutil.copyfile(bundle / manifest["models"]["vocoder"]["golden"], tmp_path / "golden.npz")
    manifest["models"]["vocoder"]["golden"] = "../golden.npz"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    res = run_verifier(bundle, numpy_only_path, "--runner", "onnxruntime", "--out", str(tmp_path / "dev.json"))
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and "leaves its folder" in err[0], res.stderr
    assert not (tmp_path / "dev.json").exists()
