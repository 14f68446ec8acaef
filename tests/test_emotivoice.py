"""The emotivoice family against EmotiVoice's own outputs (shared/fixtures/emotivoice), the importer's
refusals, and imported voices built for cpu (gated), apple and jetson (bundles)."""
from __future__ import annotations

import json
import os
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

FIX = Path(os.environ.get("VOXC_SHARED") or Path(__file__).resolve().parents[2] / "shared") / "fixtures" / "emotivoice"
pytestmark = pytest.mark.skipif(not FIX.is_dir(), reason="EmotiVoice fixtures (shared/fixtures/emotivoice) absent")
FAM = family("emotivoice")


def files(**over) -> dict:
    """The fixture voice's files. (The fixture's speaker2 is EmotiVoice's full list of 2014 names; its
    generator has 8 speaker rows, so the list is passed only where a test gives one that fits.)"""
    f = {"generator": FIX / "g_00000001", "style_encoder": FIX / "style" / "checkpoint_000001",
         "bert": FIX / "style" / "simbert", "config": FIX / "config.yaml", "tokens": FIX / "tokenlist"}
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


# ---- the files as released: legacy keys, likely causes, validation before any stage ---------------

def _style(tmp_path, name, edit):
    sd = torch.load(FIX / "style" / "checkpoint_000001", weights_only=True)
    edit(sd["model"])
    path = tmp_path / name
    torch.save(sd, path)
    return path


POSITIONS = "module.bert.embeddings.position_ids"


def test_style_checkpoint_saved_by_older_transformers_imports_with_one_note(tmp_path, capsys):
    """EmotiVoice's released checkpoint_163431 carries BERT's position_ids buffer (transformers < 4.31)."""
    path = _style(tmp_path, "checkpoint_legacy", lambda m: m.__setitem__(POSITIONS, torch.arange(512)[None]))
    capsys.readouterr()
    cfg, states = FAM.import_voice(FIX, files(style_encoder=path), FAM.preset("released"))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("voxc: checkpoint_legacy: skipped 1 legacy key") and POSITIONS in out[0]
    assert not any("position_ids" in k for k in states["prompt_encoder"])
    FAM.import_voice(FIX, files(), FAM.preset("released"))
    assert capsys.readouterr().out == ""                  # nothing to say about a file without legacy keys


def _extra_bert_layer(m):
    for k in [k for k in m if k.startswith("module.bert.encoder.layer.1.")]:
        m[k.replace(".layer.1.", ".layer.2.")] = m[k].clone()


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.__setitem__(POSITIONS, torch.arange(512).flip(0)[None]), "is not the 0, 1, 2, ... buffer"),
    (_extra_bert_layer, "a different model size"),
    (lambda m: m.__setitem__("module.bert.adapter.weight", torch.zeros(2)), "a different kind of file"),
    (lambda m: m.__setitem__("am.src_word_emb.weight", torch.zeros(2)), "it holds generator keys"),
    (lambda m: m.__setitem__("module.decoder.weight", torch.zeros(2)), "a different kind of file"),
], ids=["altered-position-ids", "more-layers", "foreign-key", "generator-keys", "stray-key"])
def test_unexpected_style_keys_are_refused_with_their_likely_cause(tmp_path, capsys, edit, message):
    path = _style(tmp_path, "checkpoint_bad", edit)
    rc = main(["build", "--family", "emotivoice", "--artifacts", str(tmp_path / "art"),
               *flags(style_encoder=path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("voxc: error: ") and message in err[0], err
    assert "checkpoint_bad" in err[0]


def _config(tmp_path, edit, top: bool = False) -> Path:
    import yaml
    doc = yaml.safe_load((FIX / "config.yaml").read_text())
    edit(doc if top else doc["model"])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _lines_with(tmp_path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _bert_with_vocab(tmp_path, vocab: bytes, config: bytes | None = None) -> Path:
    folder = tmp_path / "simbert"
    folder.mkdir()
    (folder / "config.json").write_bytes(config or (FIX / "style" / "simbert" / "config.json").read_bytes())
    (folder / "vocab.txt").write_bytes(vocab)
    return folder


def _token_lines() -> list[str]:
    return (FIX / "tokenlist").read_text(encoding="utf-8").splitlines()


BAD_IMPORTS = {
    "rates-a-number": ("config", lambda t: _config(t, lambda m: m.__setitem__("upsample_rates", 8)),
                       "model.upsample_rates = 8 must be a list"),
    "rates-missing": ("config", lambda t: _config(t, lambda m: m.pop("upsample_rates")), "model.upsample_rates is missing"),
    "zero-heads": ("config", lambda t: _config(t, lambda m: m.__setitem__("decoder_n_heads", 0)),
                   "model.decoder_n_heads = 0 must be a positive whole number"),
    "dilations-plain": ("config", lambda t: _config(t, lambda m: m.__setitem__("resblock_dilation_sizes", [1, 3, 5])),
                        "resblock_dilation_sizes"),
    "config-binary": ("config", lambda t: _lines_with(t, "config.yaml", bytes(range(256))), "is not UTF-8"),
    "sample-rate": ("config", lambda t: _config(t, lambda d: d.__setitem__("sr", 22050), top=True), "sr = 22050"),
    "hop-a-string": ("config", lambda t: _config(t, lambda d: d.__setitem__("hop_length", "256"), top=True),
                     "hop_length = '256' must be a positive whole number"),
    "resblock": ("config", lambda t: _config(t, lambda m: m.__setitem__("resblock", "3")), "model.resblock = '3'"),
    "bert-config": ("bert", lambda t: _bert_with_vocab(t, b"[PAD]\n", config=b"{not json"), "is not valid JSON"),
    "rates-product": ("config", lambda t: _config(t, lambda m: m.__setitem__("upsample_rates", [8, 8, 2, 4])),
                      "multiply to 512, not the hop_length 256"),
    "rates-order": ("config", lambda t: _config(t, lambda m: m.__setitem__("upsample_rates", [8, 2, 8, 2])),
                    "kernel at least the rate"),
    "kernels": ("config", lambda t: _config(t, lambda m: m.__setitem__("upsample_kernel_sizes", [16, 16, 6, 4])),
                "upsample_kernel_sizes[2] = 6"),
    "tokens-not-utf8": ("tokens", lambda t: _lines_with(t, "tokenlist", b"_\n\xff\xfe\n"), "is not UTF-8"),
    "speakers-not-utf8": ("speakers", lambda t: _lines_with(t, "speaker2", b"8051\n\xe9t\xe9\n"), "is not UTF-8"),
    "vocab-not-utf8": ("bert", lambda t: _bert_with_vocab(t, b"[PAD]\n\xff\n"), "is not UTF-8"),
    "token-twice": ("tokens", lambda t: _lines_with(t, "tokenlist", "\n".join(
        _token_lines()[:5] + _token_lines()[4:5] + _token_lines()[6:]) + "\n"), "is on lines 5 and 6"),
    "speakers-empty": ("speakers", lambda t: _lines_with(t, "speaker2", "\n"), "lists no speaker names"),
    "speakers-all-repeated": ("speakers", lambda t: _lines_with(t, "speaker2", "8051\n8051\n8051\n"),
                              "is on lines 1 and 2"),
    "speakers-too-many": ("speakers", lambda t: _lines_with(t, "speaker2", "".join(f"s{i}\n" for i in range(9))),
                          "names 9 speakers but the generator's speaker table has 8 rows"),
    "weight-inf": ("generator", lambda t: _tamper(t, "g_inf", lambda g: g["am.to_mel.weight"].__setitem__(
        (0, 0), float("inf"))), "am.to_mel.weight holds 1 non-finite"),
    "weight-nan": ("style_encoder", lambda t: _style(t, "checkpoint_nan", lambda m: m[
        "module.bert.pooler.dense.bias"].__setitem__(0, float("nan"))), "module.bert.pooler.dense.bias holds 1 non-finite"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMPORTS))
def test_bad_voice_files_are_refused_before_any_stage_runs(tmp_path, capsys, case):
    kind, make, message = BAD_IMPORTS[case]
    path = make(tmp_path)
    art = tmp_path / "art"
    rc = main(["build", "--family", "emotivoice", "--artifacts", str(art), *flags(**{kind: path})])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("voxc: error: ") and message in err[0], err
    assert str(path) in err[0] or path.name in err[0]
    assert not (art / "cache").exists() and not (art / "imports").exists()      # nothing started


# ---- a checkout as released, built: one note, the lexicon in use, bounds, text at Triton's door -----

LEXICON = "HELLO HH EH0 L OW1\nWORLD W ER1 L D\nZORBLAT Z AO1 R B L AE2 T\n"
FP32 = [a for m in ("prompt_encoder", "acoustic_encoder", "acoustic_decoder", "vocoder")
        for a in ("--precisions", f"{m}=fp32")]


@pytest.fixture(scope="module")
def released_checkout_build(tmp_path_factory):
    """A tiny checkout written as EmotiVoice releases its files (style encoder with position_ids, the
    LibriSpeech-style lexicon beside it), built for onnxruntime as `make engines FAMILY=emotivoice FROM=DIR`."""
    import contextlib
    import io

    from voxc.models.emotivoice.synthetic import write_checkout
    root = tmp_path_factory.mktemp("released")
    checkout = write_checkout(root / "EmotiVoice", preset="tiny", lexicon=LEXICON)
    art = root / "art"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["build", "--family", "emotivoice", "--from", str(checkout), "--preset", "tiny",
                   "--target", "onnxruntime", "--artifacts", str(art), *FP32])
    return {"rc": rc, "stdout": out.getvalue(), "art": art, "checkout": checkout}


def test_a_checkout_as_released_builds_with_one_informational_line(released_checkout_build):
    b = released_checkout_build
    assert b["rc"] == 0, b["stdout"][-2000:]
    notes = [line for line in b["stdout"].splitlines() if "legacy key" in line]
    assert len(notes) == 1 and POSITIONS in notes[0], notes
    from voxc.core.hashing import sha256_file
    m = json.loads((b["art"] / "onnxruntime" / "manifest.json").read_text())
    lex = m["preset_config"]["lexicon"]                  # which lexicon the target speaks with
    assert lex["source"] == "librispeech-lexicon.txt" and lex["words"] == 3
    assert lex["sha256"] == sha256_file(b["checkout"] / "lexicon" / "librispeech-lexicon.txt")
    stored = list((b["art"] / "imports").glob("emotivoice-*/lexicon.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text()) == lex


def test_speak_uses_the_lexicon_and_warns_once_for_letter_to_sound(released_checkout_build, tmp_path, capsys):
    b = released_checkout_build
    target = b["art"] / "onnxruntime"
    capsys.readouterr()
    assert main(["speak", "Hello world, zorblat.", "--folder", str(target), "-o", str(tmp_path / "a.wav")]) == 0
    assert "warning" not in capsys.readouterr().err          # every word is in the lexicon or CMUdict
    assert main(["speak", "Hello quixotry, flumbrix and quixotry.", "--folder", str(target),
                 "-o", str(tmp_path / "b.wav")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("voxc: warning: 2 English word(s)") and "flumbrix, quixotry" in err[0]


def test_the_pipeline_api_refuses_frames_past_the_graphs_range_in_one_line(released_checkout_build):
    """200 tokens make ~4x the frames maximum: refused before the length regulator runs, naming the bound
    (it was a broadcast error from inside the decoder)."""
    import voxc
    from voxc.models.emotivoice.flow import phoneme_ids
    b = released_checkout_build
    target = voxc.open(b["art"] / "onnxruntime")
    cfg = target.config
    pipe = target.pipeline(runtime="onnxruntime", threads=1)
    text = "今天天气很好"
    ids = phoneme_ids(text, cfg)
    tiled = np.concatenate([ids[:1]] + [ids[1:-1]] * (cfg["dims"]["phonemes"][3] // (ids.size - 2)))[None]
    inputs = {"ids": tiled[:, :cfg["dims"]["phonemes"][3]], "text": text, "prompt": "开心", "speaker_name": 0,
              "alpha": 6.0}
    with pytest.raises(VoxcError) as e:
        pipe.run(inputs, ["waveform"])
    msg = str(e.value)
    assert "\n" not in msg and "frames" in msg and f"maximum {cfg['dims']['frames'][3]}" in msg
    assert "length_regulator" in msg
    too_long = {**inputs, "ids": np.concatenate([tiled] * 2, axis=1)}
    with pytest.raises(VoxcError, match=r"more than the maximum \d+ of the phonemes range"):
        pipe.run(too_long, ["waveform"])


def test_triton_pipeline_takes_text_voice_emotion_and_speed(released_checkout_build, tmp_path):
    """The exported emotivoice_pipeline/_stream models parse with Triton's own config schema and, run
    in-process with the repository's graph models as stubs, speak what `voxc speak` speaks."""
    pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb2

    from triton_stub import Request, load_model, waveform
    from voxc.runtime import Voice
    b = released_checkout_build
    repo = tmp_path / "repo"
    assert main(["export", "triton", "--target", "onnxruntime", "--artifacts", str(b["art"]), "--out", str(repo),
                 "--threads", "2"]) == 0
    parse = lambda name: text_format.Parse((repo / name / "config.pbtxt").read_text(), pb2.ModelConfig())
    for graph in FAM.graph_names:
        cfg = parse(graph)
        assert cfg.parameters["intra_op_thread_count"].string_value == "2"
        assert cfg.parameters["inter_op_thread_count"].string_value == "1"
        (warm,) = cfg.model_warmup
        assert {i.name for i in cfg.input} == set(warm.inputs) and all(
            w.zero_data and all(d > 0 for d in w.dims) for w in warm.inputs.values())
    for name in ("emotivoice_pipeline", "emotivoice_stream"):
        ins = {t.name: (pb2.DataType.Name(t.data_type), list(t.dims), t.optional) for t in parse(name).input}
        assert ins == {"text": ("TYPE_STRING", [1], False), "voice": ("TYPE_STRING", [1], True),
                       "speaker": ("TYPE_STRING", [1], True), "style": ("TYPE_STRING", [1], True),
                       "emotion": ("TYPE_STRING", [1], True), "speed": ("TYPE_FP32", [1], True)}
    assert "jieba" in (repo / "README.md").read_text()               # the front end's packages, named

    voice = Voice.open(b["art"] / "onnxruntime", runtime="onnxruntime", threads=1)
    text, name = "你好，今天天气很好。Hello world!", next(iter(voice.voices()))
    calls: list = []
    served = load_model(repo, "emotivoice_pipeline", calls)
    (got,) = served.execute([Request(text=text, voice=name, emotion="开心", speed=1.25)])
    want = voice.speak(text, name, style="开心", speed=1.25).audio
    assert waveform(got).shape == want.shape and np.allclose(waveform(got), want, atol=1e-5)
    assert set(calls) == set(FAM.graph_names)                        # every graph through its Triton model
    (by_id,) = served.execute([Request(text=text, speaker="3", style="开心")])
    assert np.allclose(waveform(by_id), voice.speak(text, speaker="3", style="开心").audio, atol=1e-5)
    bad = served.execute([Request(text=text, voice="nobody"), Request(voice=name), Request(text=text, voice=name,
                                                                                           speed=float("nan"))])
    messages = [r.error().message() for r in bad]
    assert "unknown voice 'nobody'" in messages[0] and "'text' is required" in messages[1] and "speed" in messages[2]
    assert all("\n" not in m for m in messages)
    if (repo / "emotivoice_stream").is_dir():
        stream = load_model(repo, "emotivoice_stream", [])
        request = Request(text=text, voice=name, style="开心")
        assert stream.execute([request]) is None and request.sender.final
        pieces = [waveform(r) for r in request.sender.responses]
        whole = np.concatenate(list(voice.stream(text, name, style="开心")))
        assert len(pieces) > 1 and np.allclose(np.concatenate(pieces), whole, atol=1e-5)
