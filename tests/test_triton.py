"""`voxc export triton` on the tiny cpu build: every config.pbtxt parsed with Triton's own protobuf schema
and compared with the manifest's specs and the ONNX files; the pipeline's shipped modules imported with
torch blocked; the decoupled model streams the build's accepted chunking; user mistakes in one line; and, where the
tritonserver of nvidia-pytriton is installed (`make triton-server`), the repository served for real and
called over HTTP (pipeline) and gRPC streaming (decoupled stream) against voxc's own pipeline.

That server carries the Python backend only (no ONNX Runtime backend): the served copy keeps every
graph's config as exported but swaps its platform for a Python model that runs the same model.onnx
with ONNX Runtime. The pipeline and stream models run exactly as exported."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

from voxc.cli import main

pytestmark = pytest.mark.slow
pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402

TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64"}


@pytest.fixture(scope="module")
def repo(tiny_build, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    assert main(["export", "triton", "--target", "cpu", "--artifacts", str(tiny_build), "--out", str(out),
                 "--chunk-frames", "48", "--max-queue-delay-us", "250", "--instances", "2", "--threads", "3"]) == 0
    return out


def parse(path: Path):
    return text_format.Parse(path.read_text(), pb2.ModelConfig())


def test_every_config_parses_and_matches_the_manifest_and_the_onnx(repo, tiny_build):
    import onnx
    from onnx import helper
    manifest = json.loads((tiny_build / "cpu" / "manifest.json").read_text())
    configs = {p.parent.name: parse(p) for p in repo.glob("*/config.pbtxt")}
    assert set(configs) == set(manifest["models"]) | {"voxc_pipeline", "voxc_stream"}
    for name, info in manifest["models"].items():
        cfg = configs[name]
        assert cfg.name == name and cfg.platform == "onnxruntime_onnx"
        batch = info["dims"]["batch"]["max"]
        assert cfg.max_batch_size == batch > 1
        assert list(cfg.dynamic_batching.preferred_batch_size) == sorted(
            {n for k, n in info["dims"]["batch"].items() if k != "min" and n > 1})
        assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
        assert [(g.kind, g.count) for g in cfg.instance_group] == [(pb2.ModelInstanceGroup.KIND_CPU, 2)]
        assert cfg.parameters["intra_op_thread_count"].string_value == "3"
        (warm,) = cfg.model_warmup                       # zeros at the spec's opt lengths, batch axis left out
        opt = {d: v["opt"] for d, v in info["dims"].items()}
        assert {n: list(w.dims) for n, w in warm.inputs.items()} == {
            t["name"]: [d if isinstance(d, int) else opt[d] for d in t["dims"][1:]] for t in info["inputs"]}
        assert warm.batch_size == 1 and all(w.zero_data for w in warm.inputs.values())
        graph = onnx.load(str(repo / name / "1" / "model.onnx")).graph
        for declared, tensors, in_onnx in ((info["inputs"], cfg.input, graph.input),
                                           (info["outputs"], cfg.output, graph.output)):
            assert [t.name for t in tensors] == [t["name"] for t in declared]
            onnx_io = {v.name: v for v in in_onnx}
            for t, d in zip(tensors, declared):
                assert pb2.DataType.Name(t.data_type) == TYPES[d["dtype"]]
                assert list(t.dims) == [x if isinstance(x, int) else -1 for x in d["dims"][1:]]
                v = onnx_io[t.name].type.tensor_type
                assert helper.tensor_dtype_to_np_dtype(v.elem_type).name == d["dtype"]
                assert len(v.shape.dim) == len(t.dims) + 1
        precision = info["precision"]["onnxruntime"]["accepted"]
        art = next(a for a in info["artifacts"] if a["runtime"] == "onnxruntime" and a["precision"] == precision)
        assert (repo / name / "1" / "model.onnx").read_bytes() == (tiny_build / "cpu" / art["path"]).read_bytes()
    for name, decoupled in (("voxc_pipeline", False), ("voxc_stream", True)):
        cfg = configs[name]
        assert cfg.backend == "python" and cfg.max_batch_size == 0
        assert cfg.model_transaction_policy.decoupled == decoupled
        ins = {t.name: (pb2.DataType.Name(t.data_type), list(t.dims), t.optional) for t in cfg.input}
        assert ins == {"text": ("TYPE_STRING", [1], False), "voice": ("TYPE_STRING", [1], True),   # voxc serve's
                       "style": ("TYPE_STRING", [1], True), "emotion": ("TYPE_STRING", [1], True),  # request
                       "speed": ("TYPE_FP32", [1], True)}
        assert [(t.name, list(t.dims)) for t in cfg.output] == [("waveform", [-1])]
        assert (repo / name / "1" / "model.py").is_file()
    assert "tritonserver --model-repository" in (repo / "README.md").read_text()


def blocked_python(extra_path: Path, code: str) -> subprocess.CompletedProcess:
    """python -I -S with only numpy (and the given folder) importable; importing torch raises."""
    import numpy
    site = Path(numpy.__file__).parent.parent
    prelude = ("import sys\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('torch', 'onnx', 'onnxruntime', 'scipy', 'safetensors'):\n"
               "            raise ImportError('blocked: ' + name)\n"
               f"sys.meta_path.insert(0, Block())\nsys.path[:0] = [{str(extra_path)!r}]\n"
               f"sys.path.append({str(site)!r})\n")
    return subprocess.run([sys.executable, "-I", "-S", "-c", prelude + code], capture_output=True, text=True,
                          timeout=120)


def test_pipeline_modules_load_and_plan_without_torch(repo):
    model_dir = repo / "voxc_pipeline" / "1"
    r = blocked_python(model_dir, (
        "import json, voxc\n"
        f"assert voxc.__file__.startswith({str(model_dir)!r}), voxc.__file__\n"
        "from voxc.models.family import family\n"
        "from voxc.models.pipeline import Pipeline\n"
        "from voxc.models.spec import spec_from_json\n"
        "import voxc.targets.split, voxc.runtime\n"
        f"doc = json.load(open({str(model_dir / 'pipeline.json')!r}))\n"
        "specs = {g: spec_from_json(g, j) for g, j in doc['specs'].items()}\n"
        "p = Pipeline(family(doc['family']), doc['config'], {}, specs)\n"
        "steps = p.plan({'phoneme_ids', 'reference_mel'}, [doc['output']])\n"
        "print(' '.join(s.name for s in steps))\n"
        "assert 'torch' not in sys.modules\n"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["reference", "speaker_encoder", "emotion_encoder", "phonemes", "acoustic_encoder",
                                "frame_timing", "length_regulator", "acoustic_decoder", "vocoder"]


def test_the_pipeline_model_speaks_text_as_voxc_speak_does(repo, tiny_build):
    """model.py run in this process, every graph request answered by the repository's own model.onnx
    (tests/triton_stub.py): text and a built-in voice in, the waveform Voice.speak makes out."""
    from triton_stub import Request, load_model, waveform
    from voxc.runtime import Voice
    voice = Voice.open(tiny_build / "cpu", runtime="onnxruntime", threads=1)
    name = next(iter(voice.voices()))
    calls: list = []
    served = load_model(repo, "voxc_pipeline", calls)
    (got,) = served.execute([Request(text="Hello there. How are you?", voice=name, speed=1.2)])
    want = voice.speak("Hello there. How are you?", name, speed=1.2).audio
    assert waveform(got).shape == want.shape and np.allclose(waveform(got), want, atol=1e-5)
    assert "vocoder" in calls
    (bad,) = served.execute([Request(text="Hello.", voice="nobody")])
    assert "unknown voice 'nobody'" in bad.error().message()


def test_user_mistakes_are_one_line(repo, tiny_build, tmp_path, capsys):
    cases = [
        ["--target", "jetson", "--artifacts", str(tmp_path), "--out", str(tmp_path / "a")],        # never built
        ["--target", "cpu", "--artifacts", str(tiny_build), "--out", str(repo)],                  # not empty
        ["--target", "cpu", "--artifacts", str(tiny_build), "--out", str(repo / "README.md" / "x")],  # unwritable
        ["--target", "cpu", "--artifacts", str(tiny_build), "--out", str(tmp_path / "b"), "--runtime", "coreml"],
        ["--target", "cpu", "--artifacts", str(tiny_build), "--out", str(tmp_path / "c"), "--instances", "0"],
    ]
    for args in cases:
        capsys.readouterr()
        assert main(["export", "triton", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("voxc: error:") and err.count("\n") == 1, err
    assert not any(p.name.endswith(".tmp") for p in list(tmp_path.iterdir()) + list(repo.parent.iterdir()))
    assert (repo / "README.md").is_file()


# ---- served by a real tritonserver ---------------------------------------------------------------

def tritonserver() -> Path | None:
    """The tritonserver folder nvidia-pytriton's wheel carries (bin/, backends/python, python stubs)."""
    spec = importlib.util.find_spec("pytriton")       # located, not imported (it pins numpy < 2)
    folder = Path(spec.submodule_search_locations[0]) / "tritonserver" if spec else None
    return folder if folder and (folder / "bin" / "tritonserver").is_file() else None


GRAPH_STAND_IN = '''
import json
import sys
from pathlib import Path
import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(Path(__file__).parent / "model.onnx"), so)
        self.inputs = [t["name"] for t in cfg["input"]]
        self.outputs = [t["name"] for t in cfg["output"]]

    def execute(self, requests):
        out = []
        for r in requests:
            feeds = {n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs}
            got = self.session.run(self.outputs, feeds)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor(n, v) for n, v in zip(self.outputs, got)]))
        return out
'''


# Found running nvidia-pytriton 0.7.0 (Triton 2.51) here: every model loads and the BLS pipeline runs its
# host steps, but its Python-backend stub predates NumPy 2's ABI (a pb_utils.Tensor made from a NumPy 2
# array arrives with 0 bytes: "input byte size mismatch ... got 0"), and its embedded interpreter ignores
# PYTHONPATH/PYTHONHOME (EXECUTION_ENV_PATH's activate script included), so the stub's numpy is the base
# interpreter's. Served checks need a stub built for NumPy 2 or a base Python with numpy < 2.
import numpy as _np  # noqa: E402
STUB_NUMPY_2 = ("the tritonserver's Python-backend stub (2.51) cannot exchange NumPy 2 arrays and this "
                "interpreter's numpy is 2.x") if int(_np.__version__.split(".")[0]) >= 2 else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(repo, tmp_path_factory):
    server = tritonserver()
    if server is None:
        pytest.skip("no tritonserver here: `make triton-server` installs nvidia-pytriton's (Python backend only)")
    if STUB_NUMPY_2:
        pytest.skip(STUB_NUMPY_2)
    root = tmp_path_factory.mktemp("served")
    models = root / "models"
    shutil.copytree(repo, models)
    for cfg_path in models.glob("*/config.pbtxt"):
        cfg = parse(cfg_path)
        if cfg.platform:                                  # a graph: same config, Python stand-in for ORT
            cfg.ClearField("platform")
            cfg.backend = "python"
            (cfg_path.parent / "1" / "model.py").write_text(GRAPH_STAND_IN)
            cfg_path.write_text(text_format.MessageToString(cfg))
    backends = root / "backends" / "python"
    backends.mkdir(parents=True)
    for f in (server / "backends" / "python").iterdir():
        os.symlink(f, backends / f.name)
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy2(server / "python_backend_stubs" / py / "triton_python_backend_stub", backends)
    http, grpc, metrics = free_port(), free_port(), free_port()
    env = {**os.environ,
           "LD_LIBRARY_PATH": f"{sysconfig.get_config_var('LIBDIR')}:{server.parent.parent / 'nvidia_pytriton.libs'}",
           "OMP_NUM_THREADS": "1"}
    log = open(root / "tritonserver.log", "w")
    proc = subprocess.Popen([str(server / "bin" / "tritonserver"), "--model-repository", str(models),
                             "--backend-directory", str(root / "backends"), "--http-address", "127.0.0.1",
                             "--grpc-address", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc),
                             "--metrics-port", str(metrics), "--allow-metrics", "false", "--exit-timeout-secs", "10"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    import tritonclient.http as httpclient
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
    try:
        deadline, ready = time.monotonic() + 180, False
        while not ready and time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = client.is_server_ready()
            except Exception:  # noqa: BLE001 -- not listening yet
                time.sleep(1)
        if not ready:
            pytest.fail(f"tritonserver did not become ready:\n{(root / 'tritonserver.log').read_text()[-3000:]}")
        yield {"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}", "log": root / "tritonserver.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def utterance(tiny_build):
    from voxc.runtime import Voice
    voice = Voice.open(tiny_build / "cpu", runtime="onnxruntime", threads=1)
    return {"text": "Hello there, this is a streamed test.", "voice": next(iter(voice.voices()))}


def http_inputs(httpclient, values: dict) -> list:
    out = []
    for name, v in values.items():
        t = httpclient.InferInput(name, [1], "BYTES")
        t.set_data_from_numpy(np.array([v.encode()], dtype=object))
        out.append(t)
    return out


def test_the_pipeline_served_by_triton_matches_voxc(served, tiny_build, utterance):
    import tritonclient.http as httpclient
    from voxc.runtime import Voice
    reference = Voice.open(tiny_build / "cpu", runtime="onnxruntime", threads=1).speak(
        utterance["text"], utterance["voice"]).audio
    client = httpclient.InferenceServerClient(served["http"], network_timeout=120)
    got = client.infer("voxc_pipeline", http_inputs(httpclient, utterance)).as_numpy("waveform")
    assert got.shape == reference.shape
    assert np.allclose(got, reference, rtol=1e-4, atol=1e-5), np.abs(got - reference).max()


def test_the_decoupled_stream_served_by_triton_sends_pieces_that_join_to_chunked_vocoding(served, tiny_build,
                                                                                         utterance):
    import queue

    import tritonclient.grpc as grpcclient
    from voxc.runtime import Voice
    voice = Voice.open(tiny_build / "cpu", runtime="onnxruntime", threads=1)
    streamed = np.concatenate(list(voice.stream(utterance["text"], utterance["voice"])))
    got: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(served["grpc"])
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    inputs = []
    for name, v in utterance.items():
        t = grpcclient.InferInput(name, [1], "BYTES")
        t.set_data_from_numpy(np.array([v.encode()], dtype=object))
        inputs.append(t)
    client.async_stream_infer("voxc_stream", inputs, enable_empty_final_response=True)
    pieces = []
    while True:
        result, error = got.get(timeout=120)
        assert error is None, error
        if result.get_response().parameters["triton_final_response"].bool_param:
            break
        pieces.append(result.as_numpy("waveform"))
    client.stop_stream()
    joined = np.concatenate(pieces)
    assert len(pieces) > 1 and joined.shape == streamed.shape and np.allclose(joined, streamed, rtol=1e-4, atol=1e-5)
