"""The speech server under the traffic real users send: the official OpenAI SDK (non-streamed and
streamed), clients that hang up or read slowly, a wedged pool, SIGTERM, every audio format, strict
request types, auth, CORS and body/header limits. Every server is a real `voxc serve` process on
127.0.0.1 (voxc.loadgen.server_process), bounded in time and stopped by the fixture."""
from __future__ import annotations

import io
import json
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from voxc.admission import WEDGE_ENV
from voxc.audio_formats import FORMATS
from voxc.loadgen import running_server, server_process

TEXT = "Hello there. This is a short sentence, spoken twice over."
LONG = " ".join(["The quick brown fox jumps over the lazy dog, and then it runs away."] * 12)


def _openai(url: str, **kw):
    import openai
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, **kw)


def _depth(url: str) -> int:
    return httpx.get(url + "/ready", timeout=5).json()["queue_depth"]


def _wait_depth_zero(url: str, within: float) -> float:
    t0 = time.monotonic()
    while _depth(url) != 0:
        assert time.monotonic() - t0 < within, f"queue depth still {_depth(url)} after {within} s"
        time.sleep(0.2)
    return time.monotonic() - t0


def _post_in_background(url: str) -> None:
    """A request left running (its answer, or the server going away, does not matter)."""
    def post():
        try:
            httpx.post(url + "/v1/audio/speech", json={"input": "Hi."}, timeout=40)
        except httpx.HTTPError:
            pass
    threading.Thread(target=post, daemon=True).start()


def _decode(data: bytes) -> tuple[int, float]:
    """(sample rate, seconds) of an encoded response, decoded by PyAV (FFmpeg's libraries; no binary)."""
    import av
    with av.open(io.BytesIO(data)) as c:
        n, rate = 0, None
        for frame in c.decode(audio=0):
            n, rate = n + frame.samples, frame.sample_rate
    return rate, n / rate


@pytest.fixture(scope="module")
def server(tiny_build):
    with running_server(tiny_build / "cpu", ["--workers", "4", "--queue", "32"]) as url:
        yield url


@pytest.mark.slow
def test_64_concurrent_sdk_requests_are_answered_or_refused_at_once(server):
    def one(i):
        try:
            r = _openai(server, timeout=120).audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                                                  response_format="wav")
            return 200, len(r.content)
        except Exception as exc:  # noqa: BLE001 -- the SDK's error carries the status
            return getattr(exc, "status_code", repr(exc)), 0
    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(one, range(64)))
    statuses = [s for s, _ in results]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 36 and all(n > 1000 for s, n in results if s == 200)   # workers + queue
    _wait_depth_zero(server, 10)
    assert httpx.get(server + "/health").status_code == 200
    assert _openai(server, timeout=60).audio.speech.create(model="tts-1", voice="nova", input="Hi.").content


@pytest.mark.slow
def test_64_streamed_requests_all_complete(tiny_build):
    with running_server(tiny_build / "cpu", ["--workers", "4", "--queue", "64"]) as url:
        def one(i):
            with _openai(url, timeout=180).audio.speech.with_streaming_response.create(
                    model="tts-1", voice="echo", input=TEXT, response_format="pcm") as r:
                return r.http_response.status_code, sum(len(c) for c in r.iter_bytes())
        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(one, range(64)))
        assert all(s == 200 and n > 1000 for s, n in results), results
        _wait_depth_zero(url, 10)


def _post_raw(url: str, body: dict, rcvbuf: int | None = None) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((host, int(port)))
    data = json.dumps(body).encode()
    s.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return s


@pytest.mark.slow
def test_hang_ups_and_slow_readers_give_their_places_back(tiny_build):
    timeout = 8
    with running_server(tiny_build / "cpu", ["--workers", "2", "--queue", "60",
                                             "--request-timeout", str(timeout)]) as url:
        body = {"input": LONG, "voice": "alloy", "response_format": "wav"}
        for i in range(40):                               # hang up at once, mid-stream, or after a little
            s = _post_raw(url, {**body, "stream": i % 2 == 0})
            if i % 4 == 1:
                s.recv(100)
            s.close()
        slow = [_post_raw(url, {**body, "stream": i < 2}, rcvbuf=2048) for i in range(4)]
        stop = threading.Event()

        def trickle(s):
            s.settimeout(1)
            while not stop.is_set():
                try:
                    if not s.recv(1):
                        return
                except OSError:
                    return
                time.sleep(0.5)
        readers = [threading.Thread(target=trickle, args=(s,), daemon=True) for s in slow]
        [t.start() for t in readers]
        try:
            took = _wait_depth_zero(url, timeout + 10)     # every place back within the request timeout
        finally:
            stop.set()
            [s.close() for s in slow]
        assert took <= timeout + 10
        r = httpx.post(url + "/v1/audio/speech", json={"input": "Hello.", "response_format": "wav"}, timeout=60)
        assert r.status_code == 200 and r.content[:4] == b"RIFF"
        metrics = httpx.get(url + "/metrics").text
        assert 'voxc_requests_total{status="499"}' in metrics       # the hang-ups were seen as such


@pytest.mark.slow
def test_a_wedged_pool_fails_health(tiny_build):
    with running_server(tiny_build / "cpu", ["--stall-timeout", "1"], env={WEDGE_ENV: "30"}) as url:
        assert httpx.get(url + "/health").status_code == 200
        _post_in_background(url)
        deadline = time.monotonic() + 15
        while httpx.get(url + "/health").status_code == 200:
            assert time.monotonic() < deadline, "/health kept answering 200 with a wedged pool"
            time.sleep(0.2)
        r = httpx.get(url + "/health")
        assert r.status_code == 503 and r.json()["status"] == "stalled"


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_then_exits(tiny_build):
    drain = 20
    with server_process(tiny_build / "cpu", ["--drain-timeout", str(drain)], env={WEDGE_ENV: "0.05"}) as (url, proc):
        got, first = {}, threading.Event()

        def stream():
            with httpx.stream("POST", url + "/v1/audio/speech", timeout=60,
                              json={"input": LONG, "response_format": "pcm"}) as r:
                n = 0
                for c in r.iter_bytes():
                    n += len(c)
                    first.set()
                got["status"], got["bytes"] = r.status_code, n
        t = threading.Thread(target=stream)
        t.start()
        assert first.wait(60)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.HTTPError):               # no longer accepting
            httpx.get(url + "/health", timeout=2)
        t.join(drain + 10)
        proc.wait(drain + 10)
        assert time.monotonic() - t0 <= drain + 5 and proc.returncode == 0
        assert got["status"] == 200 and got["bytes"] > 24000     # the in-flight request got all its audio


@pytest.mark.slow
def test_a_second_sigterm_exits_at_once(tiny_build):
    with server_process(tiny_build / "cpu", ["--drain-timeout", "60"], env={WEDGE_ENV: "30"}) as (url, proc):
        _post_in_background(url)
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert proc.poll() is None                           # draining the wedged request
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@pytest.mark.parametrize("stream", [False, True])
def test_every_format_decodes_at_its_stated_rate_and_length(server, stream):
    import soundfile as sf
    def get(fmt):
        r = httpx.post(server + "/v1/audio/speech", timeout=60,
                       json={"input": TEXT, "voice": "alloy", "response_format": fmt, "stream": stream})
        assert r.status_code == 200, r.text
        return r
    wav = get("wav")
    ref_s = len(wav.content[44:]) / 2 / 16000
    info = sf.info(io.BytesIO(wav.content)) if not stream else None
    assert info is None or (info.samplerate == 16000 and abs(info.duration - ref_s) < 1e-3)
    for fmt in FORMATS:
        r = get(fmt)
        stated = int(r.headers["x-voxc-sample-rate"])
        if fmt == "pcm":
            rate, seconds = 24000, len(r.content) / 2 / 24000
        elif fmt == "wav":
            rate, seconds = 16000, ref_s
        else:
            rate, seconds = _decode(r.content)
        assert rate == stated == FORMATS[fmt][1] or (FORMATS[fmt][1] is None and rate == stated == 16000), fmt
        assert abs(seconds - ref_s) <= 0.05, (fmt, seconds, ref_s)


def test_sdk_streaming_helper_streams_before_the_audio_is_all_made(tiny_build):
    with running_server(tiny_build / "cpu", env={WEDGE_ENV: "0.1"}) as url:   # every step 0.1 s slower
        with _openai(url, timeout=120).audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input=LONG, response_format="pcm") as r:
            chunks = r.iter_bytes(1024)
            first = next(chunks)
            in_flight = _depth(url)                          # still being made when the first bytes arrived
            rest = sum(len(c) for c in chunks)
        assert first and in_flight == 1 and rest > len(first)
        assert r.http_response.headers.get("transfer-encoding") == "chunked"


def test_sse_events(server):
    import base64
    with httpx.stream("POST", server + "/v1/audio/speech", timeout=60,
                      json={"input": TEXT, "voice": "alloy", "response_format": "pcm", "stream_format": "sse"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["input_tokens"] > 0
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(audio) > 24000


@pytest.mark.parametrize("body, status, message", [
    ({"speed": "2"}, 400, "speed"),
    ({"speed": True}, 400, "speed"),
    ({"stream": "true"}, 400, "stream"),
    ({"speed": 0.1}, 400, "speed"),
    ({"response_format": "ogg"}, 400, "response_format"),
    ({"stream_format": "events"}, 400, "stream_format"),
    ({"model": "gpt-5"}, 404, "model"),
    ({"voice": "nosuch"}, 404, "unknown voice"),
])
def test_strict_types_and_names(server, body, status, message):
    r = httpx.post(server + "/v1/audio/speech", json={"input": "Hello.", **body}, timeout=60)
    assert r.status_code == status and message in r.json()["error"]["message"], r.text


def test_openai_names_instructions_default_voice_and_emoji(server):
    models = httpx.get(server + "/v1/models").json()
    assert {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= {m["id"] for m in models["data"]}
    voices = httpx.get(server + "/v1/voices").json()
    assert set(voices["openai_voices"]) >= {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx",
                                            "sage", "shimmer", "verse"} and voices["default"] in voices["voices"]
    sdk = _openai(server, timeout=60)
    styled = sdk.audio.speech.create(model="gpt-4o-mini-tts", voice="coral", input="Hello there.",
                                     response_format="wav", instructions="Speak slowly and calmly.").content
    assert styled[:4] == b"RIFF"           # the tiny build has no named styles: the instruction is not used
    r = httpx.post(server + "/v1/audio/speech", json={"input": "I love \U0001F355 pizza and \u2764\ufe0f music."},
                   timeout=60)                                           # no voice: the default; mp3 by default
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    assert httpx.get(server + "/openapi.json").status_code == 404 and httpx.get(server + "/docs").status_code == 404


def test_instructions_map_through_each_familys_style_control():
    from voxc.models.family import family
    trained = {"models": {"emotion_encoder": {"weights": {"source": "trained voice"}}}}
    voxc = family("voxc").speaking
    assert voxc.instructions("Speak slowly and calmly.", {}, trained) == {"style": "slow_low"}
    assert voxc.instructions("Cheerful and fast!", {}, trained) == {"style": "fast_high"}
    assert voxc.instructions("use fast_high", {}, trained) == {"style": "fast_high"}
    assert voxc.instructions("Read it.", {}, trained) == {"style": "neutral"}
    assert voxc.instructions("Speak slowly.", {}, {"models": {}}) == {}         # no named styles on this target
    emoti = family("emotivoice").speaking
    assert emoti.instructions(" 开心 ", {}, {}) == {"style": "开心"}            # EmotiVoice: the prompt itself


def test_bodies_and_headers_are_limited_while_they_arrive(tiny_build):
    with running_server(tiny_build / "cpu", ["--header-timeout", "1", "--body-timeout", "1"]) as url:
        def chunks():
            yield b'{"input": "'
            for _ in range(200):
                yield b"x" * 1000
        r = httpx.post(url + "/v1/audio/speech", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413                          # chunked: no Content-Length to trust
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as s:   # slowloris: headers never finish
            s.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\n")
            s.settimeout(10)
            assert s.recv(100) == b""                        # closed by the server after --header-timeout
        with socket.create_connection((host, int(port))) as s:   # a body that stops half way
            s.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"input\":")
            s.settimeout(10)
            assert b" 408 " in s.recv(200).split(b"\r\n")[0] + b" "


def test_api_key_and_cors(tiny_build):
    with running_server(tiny_build / "cpu", ["--api-key", "s3cret", "--cors-origin", "https://app.example"]) as url:
        assert httpx.get(url + "/health").status_code == 200                  # probes need no key
        r = httpx.post(url + "/v1/audio/speech", json={"input": "Hi."})
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
        assert httpx.get(url + "/v1/voices", headers={"authorization": "Bearer wrong"}).status_code == 401
        ok = _openai(url, timeout=60)
        ok.api_key = "s3cret"
        assert ok.audio.speech.create(model="tts-1", voice="alloy", input="Hi.").content
        pre = httpx.options(url + "/v1/audio/speech", headers={"origin": "https://app.example",
                                                               "access-control-request-method": "POST"})
        assert pre.headers.get("access-control-allow-origin") == "https://app.example"
        other = httpx.options(url + "/v1/audio/speech", headers={"origin": "https://evil.example",
                                                                 "access-control-request-method": "POST"})
        assert "access-control-allow-origin" not in other.headers


def test_warning_when_reachable_from_other_machines_without_a_key():
    from voxc.server import exposure_warning
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("localhost", None) is None
    assert exposure_warning("0.0.0.0", "key") is None
    warning = exposure_warning("0.0.0.0", None)
    assert warning.startswith("voxc: warning: serving on 0.0.0.0") and "--api-key" in warning


@pytest.mark.parametrize("argv, message", [
    (["loadtest", "x", "--clients", "a,b"], "--clients"),
    (["serve", "x", "--host", "999.1.1.1"], "--host"),
    (["serve", "x", "--request-timeout", "0"], "--request-timeout"),
    (["serve", "x", "--voice-map", "alloy"], "--voice-map"),
])
def test_serving_commands_refuse_bad_options_in_one_line(argv, message, capsys):
    """Each is refused before any target is opened (x is not one)."""
    from voxc.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("voxc: error:") and message in err[0]


def test_pool_threads_go_to_the_earliest_request_and_cancelled_waiters_leak_nothing():
    import asyncio
    from voxc.admission import Slots

    async def main():
        slots, order = Slots(1), []
        await slots.acquire(0)

        async def step(priority):
            await slots.acquire(priority)
            order.append(priority)
            await asyncio.sleep(0.01)
            slots.release()
        tasks = [asyncio.create_task(step(p)) for p in (5, 3, 9, 1)]
        await asyncio.sleep(0.01)
        tasks[2].cancel()                                   # a client that left while waiting
        slots.release()
        await asyncio.gather(*tasks, return_exceptions=True)
        return order, slots.free
    assert asyncio.run(main()) == ([1, 3, 5], 1)


def test_a_port_in_use_is_one_line_before_the_voice_is_loaded(capsys, tmp_path):
    from voxc.cli import main
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(tmp_path), "--port", str(port)]) == 2      # a folder holding no build
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot listen on 127.0.0.1" in err[0]


@pytest.mark.slow
def test_a_short_soak_recovers_and_its_checks_can_fail(tiny_build):
    from voxc.soak import run_soak
    doc = run_soak(tiny_build / "cpu", minutes=0.2, max_requests=80, clients=4, slow_s=1.0, rss_growth_mb=-1.0)
    assert doc["requests"] > 0 and not doc["errors"] and doc["queue_depth_end"] == 0
    assert doc["health_end"] == 200 and doc["normal_request_end"] == 200
    assert not doc["passed"]                                # an RSS bound no server can meet fails the run


def test_docs_only_when_asked_and_the_voice_map_is_checked(tiny_build):
    from fastapi.testclient import TestClient
    from voxc.core.errors import VoxcError
    from voxc.runtime import Voice
    from voxc.server import create_app
    voice = Voice.open(tiny_build / "cpu")
    name = sorted(voice.voices())[-1]
    client = TestClient(create_app(voice, docs=True, voice_overrides={"alloy": name}))
    assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200
    assert client.get("/v1/voices").json()["openai_voices"]["alloy"] == name
    with pytest.raises(VoxcError, match="unknown voice"):
        create_app(voice, voice_overrides={"alloy": "nobody"})
    with pytest.raises(VoxcError, match="default-voice"):
        create_app(voice, default_voice="nobody")
