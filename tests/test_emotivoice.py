"""The emotivoice family against EmotiVoice's own outputs (shared/fixtures/emotivoice), the importer's
refusals, and imported voices built for cpu (gated), apple and jetson (bundles)."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from voxc.cli import main
from voxc.core.errors import VoxcError
from voxc.models.family import family, init_module, model_spec
from voxc.models.pipeline import Pipeline
from voxc.targets.runner import TorchRunner

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "emotivoice"
pytestmark = pytest.mark.skipif(not FIX.is_dir(), reason="EmotiVoice fixtures (shared/fixtures/emotivoice) absent")
FAM = family("emotivoice")


def files(**over) -> dict:
    f = {"generator": FIX / "g_00000001", "style_encoder": FIX / "style" / "checkpoint_000001",
         "bert": FIX / "style" / "simbert", "config": FIX / "config.yaml", "tokens": FIX / "tokenlist",
         "speakers": FIX / "speaker2"}
    return {k: str(v) for k, v in {**f, **over}.items()}


def flags(**over) -> list[str]:
    return ["--from", str(FIX)] + [a for k, v in files(**over).items() for a in ("--from-file", f"{k}={v}")]


def imported(generator: str = "g_00000001"):
    from voxc.models.emotivoice.checkpoint import load_graph_state
    cfg, states = FAM.import_voice(FIX, files(generator=FIX / generator), FAM.preset("released"))
    runners = {}
    for g in FAM.graph_names:
        m = init_module(g, cfg)
        if g in states:                     # the length regulator has no weights
            load_graph_state(m, states[g], g, generator)
        runners[g] = TorchRunner(m, model_spec(g, cfg))
    return cfg, runners


@pytest.mark.parametrize("generator", ["g_00000001", "g_00000001.old_wn"])
def test_imported_voice_reproduces_emotivoice(generator):
    cfg, runners = imported(generator)
    pipe = Pipeline(FAM, cfg, runners)
    io = np.load(FIX / "io.npz")
    for case in ("0", "1", "2"):
        get = lambda k: io[f"{case}/{k}"]
        run = pipe.run({"ids": get("ids"), "speaker": get("spk"), "style": get("style"), "content": get("content")},
                       ["waveform", "predicted_durations", "pitch", "energy", "mel"]).values
        np.testing.assert_array_equal(run["predicted_durations"], get("durations"))
        np.testing.assert_allclose(run["pitch"], get("pitch"), atol=1e-5)
        np.testing.assert_allclose(run["energy"], get("energy"), atol=1e-5)
        np.testing.assert_allclose(run["mel"].transpose(0, 2, 1), get("dec_outputs"), atol=1e-4)
        assert run["waveform"].shape == get("wav").shape
        np.testing.assert_allclose(run["waveform"], get("wav"), atol=1e-5)


def test_prompt_encoder_and_tokenizer_reproduce_simbert():
    from voxc.models.emotivoice.flow import bert_ids
    cfg, runners = imported()
    io = np.load(FIX / "style" / "io.npz")
    for i in range(12):
        ids = bert_ids(str(io[f"{i}/text"]), cfg)
        np.testing.assert_array_equal(ids[None], io[f"{i}/input_ids"])
        out = runners["prompt_encoder"].infer({"input_ids": ids[None]})["pooler_output"]
        np.testing.assert_allclose(out, io[f"{i}/pooler_output"], atol=1e-5)


def test_speed_factor_scales_the_frame_count():
    cfg, runners = imported()
    pipe = Pipeline(FAM, cfg, runners)
    text = {"text": "今天天气真好。", "prompt": "开心", "speaker_name": 3}
    normal = pipe.run(text, ["waveform", "frames"]).values
    slow = pipe.run({**text, "alpha": 1.5}, ["waveform", "frames"]).values
    assert slow["frames"] == round(1.5 * float(normal["durations"].sum()))
    assert slow["waveform"].shape[-1] == slow["frames"] * cfg["hop"]


def _tamper(tmp_path, name, edit):
    sd = torch.load(FIX / "g_00000001", weights_only=True)
    edit(sd["generator"])
    path = tmp_path / name
    torch.save(sd, path)
    return path


class Payload:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/voxc-pwned-by-checkpoint"),))


@pytest.mark.parametrize("case, message", [
    ("missing", "missing am.encoder.encoders.1"),
    ("extra", "unexpected keys am.extra_head.weight"),
    ("shape", "shape mismatch am.encoder.encoders.1.feed_forward.w_1.weight"),
    ("pickle", "needs code to unpickle"),
    ("text", "cannot be read as a PyTorch checkpoint"),
    ("wrongkey", "expected {'generator': state_dict}"),
    ("tokens", "lists 3 tokens but the generator's embedding has 502 rows"),
    ("nofile", "EmotiVoice generator not found"),
])
def test_bad_checkpoints_are_refused_in_one_line(tmp_path, capsys, case, message):
    over = {}
    if case == "missing":
        over["generator"] = _tamper(tmp_path, "g_missing", lambda g: [g.pop(k) for k in list(g)
                                                                      if k.startswith("am.encoder.encoders.1.norm1")])
    elif case == "extra":
        over["generator"] = _tamper(tmp_path, "g_extra", lambda g: g.__setitem__("am.extra_head.weight", torch.zeros(2)))
    elif case == "shape":
        key = "am.encoder.encoders.1.feed_forward.w_1.weight"
        over["generator"] = _tamper(tmp_path, "g_shape", lambda g: g.__setitem__(key, torch.zeros(8, 64, 3)))
    elif case == "pickle":
        over["generator"] = tmp_path / "g_pickle"
        over["generator"].write_bytes(pickle.dumps({"generator": Payload()}))
    elif case == "text":
        over["generator"] = tmp_path / "g_text"
        over["generator"].write_text("not a checkpoint")
    elif case == "wrongkey":
        over["generator"] = tmp_path / "g_model"
        torch.save({"model": {"w": torch.zeros(1)}}, over["generator"])
    elif case == "tokens":
        over["tokens"] = tmp_path / "tokenlist"
        over["tokens"].write_text("_\n<sos/eos>\na\n")
    elif case == "nofile":
        over["generator"] = tmp_path / "absent"
    rc = main(["build", "--family", "emotivoice", "--artifacts", str(tmp_path / "art"), *flags(**over)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("voxc: error: ") and message in err[0], err
    assert not Path("/tmp/voxc-pwned-by-checkpoint").exists()
    assert not (tmp_path / "art" / "cpu").exists()


@pytest.fixture(scope="module")
def emotivoice_build(tmp_path_factory):
    art = tmp_path_factory.mktemp("emotivoice")
    rc = main(["build", "--family", "emotivoice", "--preset", "released", "--target", "cpu", "--artifacts", str(art),
               "--precisions", "vocoder=fp32", *flags()])
    return art, rc


def test_imported_voice_builds_for_cpu_and_passes_every_gate(emotivoice_build):
    art, rc = emotivoice_build
    assert rc == 0
    m = json.loads((art / "cpu" / "manifest.json").read_text())
    assert m["family"] == "emotivoice" and set(m["models"]) == set(FAM.graph_names)
    assert all(i["weights"]["source"] == "emotivoice checkpoint" for n, i in m["models"].items()
               if n != "length_regulator")
    doc = json.loads((art / "cpu" / "parity.json").read_text())
    assert doc["passed"] and {r["model"] for r in doc["results"]} == set(FAM.graph_names)
    frames = [r["length"] for r in doc["results"] if r["model"] == "vocoder"]
    assert max(frames) > 2 * model_spec("vocoder", m["preset_config"]).dims["frames"].export   # far from the example
    chain = doc["chain"]["runtimes"]["onnxruntime"]["rows"]
    assert all(r["within_budget"] for r in chain) and chain[0]["exact_match"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("target", ["apple", "jetson", "x86-cuda"])
def test_imported_voice_builds_device_bundles(emotivoice_build, target):
    art, _ = emotivoice_build
    assert main(["build", "--family", "emotivoice", "--preset", "released", "--target", target,
                 "--artifacts", str(art), *flags()]) == 0
    bundle = json.loads((art / target / "bundle" / "manifest.json").read_text())
    assert set(bundle["models"]) == set(FAM.graph_names)


def test_imported_voice_speaks_through_the_runtime_and_the_server(emotivoice_build):
    """The same runtime and server as the voxc family: speaker by name or id, the emotion prompt as the
    style (its embedding cached, the content embedding not), streamed chunks equal to the whole."""
    from fastapi.testclient import TestClient
    from voxc.core import metrics
    from voxc.runtime import Voice
    from voxc.server import create_app
    art, rc = emotivoice_build
    assert rc == 0
    voice = Voice.open(art / "cpu")
    name = next(iter(voice.voices()))
    speech = voice.speak("你好，今天天气很好。我们出去走走吧！", voice=name, style="开心")
    assert speech.seconds > 0.5 and len(speech.segments) == 2 and "vocoder" in speech.timings
    hits = voice.cache.hits
    voice.speak("再说一遍。", voice=name, style="开心")
    assert voice.cache.hits == hits + 1 and all(k[1] == "style" for k in voice.cache._items)
    stats: dict = {}
    streamed = np.concatenate(list(voice.stream("你好，今天天气很好。", voice=name, style="开心", stats=stats)))
    whole = voice.speak("你好，今天天气很好。", voice=name, style="开心").audio
    assert streamed.shape == whole.shape and metrics.snr_db(whole, streamed) > 40 and stats["ttfa_ms"] > 0
    client = TestClient(create_app(voice))
    r = client.post("/v1/audio/speech", json={"input": "你好。", "voice": name, "emotion": "悲伤", "speed": 1.5,
                                              "response_format": "wav"})
    assert r.status_code == 200 and r.content[:4] == b"RIFF"
    r = client.post("/v1/audio/speech", json={"input": "你好。", "instructions": "悲伤", "response_format": "wav"})
    assert r.status_code == 200 and r.content[:4] == b"RIFF"    # the default voice; the instruction is the prompt
    assert client.post("/v1/audio/speech", json={"input": "你好。", "voice": "nobody"}).status_code == 404
