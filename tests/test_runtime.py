"""Speaking from the artifacts: the torch-free runtime, long text, caches, streaming and its gate,
dynamic batching, and the HTTP server (a real uvicorn process on loopback)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading

import httpx
import numpy as np
import pytest

from voxc.compiler.chain import STREAM_FIRST, stream_check
from voxc.core import metrics
from voxc.loadgen import running_server
from voxc.models import segment
from voxc.models.family import model_spec
from voxc.runtime import ChunkBatcher, EmbeddingCache, Voice, option_key

BLOCK_TORCH = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this interpreter")
sys.meta_path.insert(0, Block())
"""


@pytest.fixture(scope="module")
def voice(tiny_build) -> Voice:
    return Voice.open(tiny_build / "cpu")


def _ref(voice: Voice):
    return voice.voices()[next(iter(voice.voices()))]["speaker_ref"]


def test_the_runtime_and_speak_run_without_torch(tiny_build, tmp_path):
    code = BLOCK_TORCH + f"""
from voxc.runtime import Voice
v = Voice.open({str(tiny_build / 'cpu')!r})
s = v.speak("Hello there. How are you?", voice=next(iter(v.voices())))
assert s.audio.size > 1000 and "vocoder" in s.timings, s.timings
assert "torch" not in sys.modules
from voxc.cli import main
sys.exit(main(["speak", "Hello there.", "--folder", {str(tiny_build / 'cpu')!r}, "-o", {str(tmp_path / 'x.wav')!r},
               "--stream"]))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "first audio after" in res.stdout and (tmp_path / "x.wav").stat().st_size > 1000


def test_a_target_that_failed_parity_or_was_altered_is_refused(tiny_build, tmp_path):
    import shutil
    from voxc.core.errors import VoxcError
    folder = tmp_path / "cpu"
    shutil.copytree(tiny_build / "cpu", folder)
    from voxc.core import target as schema
    p = json.loads((folder / "parity.json").read_text())
    m = json.loads((folder / "manifest.json").read_text())
    md = (folder / "parity.md").read_text()
    (folder / "parity.json").write_text(json.dumps({**p, "status": "fail", "passed": False}))
    with pytest.raises(VoxcError, match="does not match the sha256 its manifest records"):   # edited by hand
        Voice.open(folder)
    schema.write_reports(folder, m, {**p, "status": "fail", "passed": False}, md)            # a build that failed
    with pytest.raises(VoxcError, match="parity did not pass"):
        Voice.open(folder)
    schema.write_reports(folder, m, p, md)
    onnx_file = next(folder.glob("vocoder/*.onnx"))
    data = bytearray(onnx_file.read_bytes())
    data[-10] ^= 1
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(VoxcError, match="altered since the build"):
        Voice.open(folder)


@pytest.mark.parametrize("speed", ["0", "-1", "nan", "inf", "4.5"])
def test_speak_refuses_a_speed_outside_the_familys_range(tiny_build, tmp_path, speed, capsys):
    from voxc.cli import main
    out = tmp_path / "x.wav"
    assert main(["speak", "Hello.", "--folder", str(tiny_build / "cpu"), "-o", str(out), "--speed", speed]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("voxc: error: speed") and not out.exists()


@pytest.mark.parametrize("speed", [0, -1.0, float("nan"), float("inf"), 10, "2", True])
def test_the_python_api_refuses_a_speed_outside_the_familys_range(voice, speed):
    from voxc.core.errors import VoxcError
    name = next(iter(voice.voices()))
    with pytest.raises(VoxcError, match="speed"):
        voice.speak("Hello.", name, speed=speed)
    with pytest.raises(VoxcError, match="speed"):
        next(voice.stream("Hello.", name, speed=speed))
    text = "Hello there, how are you today?"
    assert voice.speak(text, name, speed=0.5).seconds > voice.speak(text, name).seconds


def test_a_voice_is_spoken_with_when_none_is_named(voice):
    assert np.array_equal(voice.speak("Hello there.").audio, voice.speak("Hello there.", voice.default_voice).audio)
    assert np.concatenate(list(voice.stream("Hello there."))).size > 0


def test_emoji_presentation_marks_are_dropped_like_emoji(voice):
    name = next(iter(voice.voices()))
    dressed = voice.speak("I love \U0001F355 pizza and \u2764\ufe0f music 1\ufe0f\u20e3.", name).audio
    assert np.array_equal(dressed, voice.speak("I love pizza and music 1.", name).audio)


def test_long_text_is_split_and_never_truncated(voice):
    cfg = voice.cfg
    sentence = "The quick brown fox jumps over the lazy dog near the quiet river bank"
    text = ", ".join([sentence] * 6) + ". " + " ".join(["word"] * 120) + "."
    assert not voice.fits(text)                                     # longer than every maximum
    segs = voice.segments(text)
    assert len(segs) > 2 and all(voice.fits(s.text) for s in segs)
    assert " ".join(s.text for s in segs).split() == text.split()     # every word kept, in order
    speech = voice.speak(text, voice=next(iter(voice.voices())))
    assert all(seg["frames"] <= cfg["dims"]["frames"][3] for seg in speech.segments)
    alone = [voice.speak(s.text, voice=next(iter(voice.voices()))).audio.size for s in segs]
    pauses = sum(int(round(s.pause_after * voice.sample_rate)) for s in segs)
    assert speech.audio.size >= sum(alone) + pauses - len(segs)      # all of it spoken


def test_segmentation_rules():
    assert segment.sentences("Dr. Smith is here. He left at 5 p.m. today! Really?") == \
        ["Dr. Smith is here.", "He left at 5 p.m. today!", "Really?"]
    segs = segment.split("one, two, three, four, five six seven.", lambda t: len(t) <= 12)
    assert [s.text for s in segs] == ["one, two,", "three, four,", "five six", "seven."]
    assert [s.pause_after for s in segs] == [segment.CLAUSE_PAUSE_S, segment.CLAUSE_PAUSE_S, 0.0, 0.0]
    with pytest.raises(Exception, match="nothing to speak"):
        segment.split("?! ... \U0001F600")
    quick = segment.quick_start(segment.split("Well then, we shall see about that. Later."))
    assert [s.text for s in quick] == ["Well then,", "we shall see about that.", "Later."]


def test_embedding_cache_keys_limits_and_counters(voice):
    cache = EmbeddingCache(2)
    cache.put("a", 1), cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)                                               # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("c") == 3 and len(cache) == 2
    assert cache.stats() == {"items": 2, "max_items": 2, "hits": 2, "misses": 1, "hit_rate": 0.6667}
    wave = np.sin(np.arange(16000, dtype=np.float32) / 9)
    assert option_key(wave) == option_key(wave.copy()) != option_key(wave * 0.5)
    v = Voice(voice.target, cache_size=8)
    ref = _ref(v)
    v.speak("Hello.", speaker_ref=ref)
    misses = v.cache.misses
    v.speak("Another sentence.", speaker_ref=ref.copy())           # same audio content: embeddings cached
    assert v.cache.misses == misses and v.cache.hits >= 2
    v.speak("Hello.", speaker_ref=ref * 0.5)                        # other audio: computed again
    assert v.cache.misses == misses + 2
    none = Voice(voice.target, cache_size=0)
    none.speak("Hello.", speaker_ref=ref)
    assert len(none.cache) == 0


def test_streaming_gate_was_recorded_and_rejects_a_broken_chunking(tiny_build, voice):
    stream = json.loads((tiny_build / "cpu" / "parity.json").read_text())["chain"]["runtimes"]["onnxruntime"]["stream"]
    assert stream["passed"] and stream["context"] >= stream["radius"] > 0 and voice.streaming.context == stream["context"]
    spec = model_spec("vocoder", voice.cfg)
    mels = [np.asarray(u.mel[None], np.float32) for u in voice.family.items("parity")[:2]]
    budget = spec.budget("fp32", "waveform")
    runner = voice.pipeline.runners["vocoder"]
    _, failed = stream_check(runner, spec, mels, budget, stream["chunk"], stream["context"])
    assert not failed
    worst, failed = stream_check(runner, spec, mels, budget, stream["chunk"], 0)    # zero overlap
    assert failed and worst["snr_db"] < budget["snr_db"]


def test_streamed_audio_matches_the_whole_utterance(voice):
    name = next(iter(voice.voices()))
    stats: dict = {}
    chunks = list(voice.stream("Hello there this is streamed.", voice=name, stats=stats))
    whole = voice.speak("Hello there this is streamed.", voice=name).audio
    streamed = np.concatenate(chunks)
    assert len(chunks) > 1 and stats["ttfa_ms"] > 0 and streamed.shape == whole.shape
    assert metrics.snr_db(whole, streamed) > 40
    assert chunks[0].size == STREAM_FIRST * voice.streaming.hop


def test_batched_chunks_equal_unbatched(voice):
    runner = voice.pipeline.runners["vocoder"]
    batcher = ChunkBatcher(runner, window_ms=50, max_batch=8)
    rng = np.random.default_rng(0)
    feeds = [{"mel": (-4 + rng.standard_normal((1, 80, 40))).astype(np.float32)} for _ in range(6)]
    feeds.append({"mel": (-4 + rng.standard_normal((1, 80, 23))).astype(np.float32)})   # another length
    got = [None] * len(feeds)
    barrier = threading.Barrier(len(feeds))

    def call(i):
        with batcher.joined():          # a stream that is vocoding: the batcher waits for it
            barrier.wait()
            got[i] = batcher.infer(feeds[i])["waveform"]
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(feeds))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert batcher.batches >= 1 and batcher.items >= 2               # some chunks did share a run
    for f, g in zip(feeds, got):
        want = runner.infer(f)["waveform"]
        assert g.shape == want.shape and metrics.elementwise(want, g)["rel_l2"] < 1e-5


# ---- the HTTP server --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tiny_build):
    with running_server(tiny_build / "cpu", ["--batch-window-ms", "2"]) as url:
        yield url


def test_speech_round_trip_over_http(server, voice):
    health = httpx.get(server + "/health").json()
    assert health["status"] == "ok" and health["streaming"]
    name = httpx.get(server + "/v1/voices").json()["voices"][0]
    r = httpx.post(server + "/v1/audio/speech", json={"input": "Hello there.", "voice": name, "response_format": "wav",
                                                      "stream": False}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav" and r.content[:4] == b"RIFF"
    size = struct.unpack("<I", r.content[40:44])[0]
    assert size == len(r.content) - 44 > 1000
    wave = np.frombuffer(r.content[44:], "<i2").astype(np.float32) / 32767
    local = voice.speak("Hello there.", voice=name).audio
    assert wave.shape == local.shape and metrics.snr_db(local, wave) > 35          # 16-bit quantisation only
    with httpx.stream("POST", server + "/v1/audio/speech", timeout=60,
                      json={"input": "Hello there.", "voice": name, "response_format": "pcm", "stream": True}) as s:
        parts = [c for c in s.iter_bytes() if c]
    pcm = np.frombuffer(b"".join(parts), "<i2").astype(np.float32) / 32767     # 24 kHz, as OpenAI's pcm
    from scipy.signal import resample_poly
    at24 = resample_poly(local, 3, 2)
    assert s.status_code == 200 and abs(pcm.size - at24.size) <= 2 and metrics.snr_db(at24[:pcm.size][:-200],
                                                                                         pcm[:at24.size][:-200]) > 20
    text = httpx.get(server + "/metrics").text
    assert 'voxc_requests_total{status="200"}' in text and "voxc_time_to_first_audio_seconds_bucket" in text
    assert "voxc_cache_hit_rate" in text and 'voxc_stage_ms_total{stage="vocoder"}' in text


@pytest.mark.parametrize("body, status, message", [
    ({"input": ""}, 400, "input"),
    ({}, 400, "input"),
    ({"input": "x" * 5000}, 400, "input"),
    ({"input": "Hello.", "voice": "nosuch"}, 404, "unknown voice"),
    ({"input": "Hello.", "response_format": "ogg"}, 400, "response_format"),
    ({"input": "Hello.", "speed": 10}, 400, "speed"),
    ({"input": "Hello.", "temperature": 1}, 400, "temperature"),
    ({"input": 5}, 400, "input"),
    ({"input": "\U0001F600 ?!"}, 400, "nothing to speak"),
    ({"input": "Hello.", "stream": "often"}, 400, "stream"),
    ({"input": "Hello.", "style": "furious"}, 400, "style"),
])
def test_bad_requests_get_a_json_4xx(server, body, status, message):
    if "voice" not in body and "input" in body:
        body = {**body, "voice": httpx.get(server + "/v1/voices").json()["voices"][0]}
    r = httpx.post(server + "/v1/audio/speech", json=body, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert message in err["message"] and "Traceback" not in r.text


def test_malformed_oversized_and_misrouted_requests(server):
    r = httpx.post(server + "/v1/audio/speech", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(server + "/v1/audio/speech", content=b"{" + b" " * 100_000 + b"}",
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and "error" in r.json()
    assert httpx.get(server + "/v1/audio/speech").status_code == 405
    assert httpx.get(server + "/nowhere").json()["error"]


def test_a_word_longer_than_one_piece_is_split_not_refused(tiny_build):
    """A long digit string is one word; when its frames overflow a piece it is cut between characters,
    and nobody asking for speech is told to rebuild the target."""
    import copy
    v = Voice.open(tiny_build / "cpu")
    v.cfg = copy.deepcopy(v.cfg)
    v.cfg["dims"]["frames"][3] = 40                          # a piece holds at most 40 frames here
    speech = v.speak("12345678901234567", v.default_voice)
    assert speech.seconds > 0 and all(seg["frames"] <= 40 for seg in speech.segments) and len(speech.segments) > 1
