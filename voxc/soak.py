"""`voxc soak`: mixed hostile-but-normal traffic against a real `voxc serve`, bounded in time and count.

Starts the server on a free loopback port (voxc.loadgen.server_process) and runs client threads for
--minutes (and at most --max-requests requests), each picking one kind of client per request:

    sdk          the official OpenAI SDK, non-streamed (mp3, the SDK's default)
    sdk_stream   the SDK's with_streaming_response, pcm, read to the end
    hangup       sends a request and closes the socket at once
    midstream    reads the first bytes of a streamed response, then closes
    slow         reads a streamed response 512 bytes at a time with pauses (until --slow-s seconds)
    oversized    a 100 KB body with its Content-Length (413 expected)
    chunked      a 200 KB chunked body (no Content-Length; 413 expected)

Then it checks that the queue depth returns to 0, /health answers 200 and a normal request succeeds,
and that the server's RSS grew by at most --rss-growth-mb. The figures (requests and outcomes by
kind, errors, queue depth at the end, RSS at start and end) are printed as JSON; exit 1 when a final
check fails. The server is always stopped.
"""
from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path

from voxc.core.errors import VoxcError

KINDS = ("sdk", "sdk_stream", "hangup", "midstream", "slow", "oversized", "chunked")
TEXTS = ("Hello there.", "The quick brown fox jumps over the lazy dog.",
         "I love \U0001F355 pizza and \u2764\ufe0f music, and 42 apples cost $3.50.",
         "Well then, we shall see about that. Later, perhaps, when the rain has stopped and the roads are dry.")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _raw(port: int, body: bytes, headers: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{headers}\r\n"
              .encode() + body)
    return s


def _status(s: socket.socket) -> int:
    line = s.recv(200).split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0


def one(kind: str, url: str, port: int, rng: random.Random, slow_s: float) -> str:
    """One request of a kind; returns its outcome ('200', '503', '413', 'hung up', ...)."""
    import openai
    text = rng.choice(TEXTS)
    body = json.dumps({"input": text, "voice": "alloy", "response_format": "pcm"}).encode()
    if kind in ("sdk", "sdk_stream"):
        client = openai.OpenAI(base_url=url + "/v1", api_key="soak", max_retries=0, timeout=120)
        try:
            if kind == "sdk":
                return "200" if client.audio.speech.create(model="tts-1", voice="alloy", input=text).content else "empty"
            with client.audio.speech.with_streaming_response.create(model="tts-1", voice="nova", input=text,
                                                                     response_format="pcm") as r:
                return "200" if sum(len(c) for c in r.iter_bytes()) else "empty"
        except openai.APIStatusError as exc:
            return str(exc.status_code)
        except openai.APIError as exc:
            return type(exc).__name__
    if kind == "hangup":
        _raw(port, body, f"Content-Length: {len(body)}\r\n").close()
        return "hung up"
    if kind == "midstream":
        with _raw(port, body, f"Content-Length: {len(body)}\r\n") as s:
            s.recv(rng.choice((10, 500, 5000)))
        return "hung up"
    if kind == "slow":
        with _raw(port, body, f"Content-Length: {len(body)}\r\n") as s:
            end = time.monotonic() + slow_s
            while time.monotonic() < end:
                if not s.recv(512):
                    return "read all"
                time.sleep(0.05)
        return "left while reading"
    if kind == "oversized":
        big = b'{"input": "' + b"x" * 100_000 + b'"}'
        with _raw(port, big, f"Content-Length: {len(big)}\r\n") as s:
            return str(_status(s))
    if kind == "chunked":
        with _raw(port, b"", "Transfer-Encoding: chunked\r\n") as s:
            try:
                for _ in range(200):
                    s.sendall(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
            except OSError:
                pass                    # the server answered 413 and closed while we were still sending
            return str(_status(s))
    raise ValueError(kind)


def run_soak(target: Path, minutes: float, max_requests: int, clients: int, slow_s: float = 5.0,
             rss_growth_mb: float = 300.0, server_args: list[str] = (), seed: int = 0) -> dict:
    import httpx
    from voxc.loadgen import server_process
    if minutes <= 0 or max_requests < 1 or clients < 1:
        raise VoxcError("--minutes must be > 0, --max-requests and --clients >= 1")
    with server_process(target, ["--request-timeout", "30", *server_args]) as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        rss_start = rss_mb(proc.pid)
        outcomes: Counter = Counter()
        lock = threading.Lock()
        end = time.monotonic() + minutes * 60
        count = {"n": 0}

        def worker(i: int) -> None:
            rng = random.Random(seed * 1000 + i)
            while time.monotonic() < end:
                with lock:
                    if count["n"] >= max_requests:
                        return
                    count["n"] += 1
                kind = rng.choice(KINDS)
                try:
                    result = one(kind, url, port, rng, slow_s)
                except OSError as exc:
                    result = f"{type(exc).__name__}"
                with lock:
                    outcomes[(kind, result)] += 1
        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
        samples: list = []

        def sample_rss() -> None:              # RSS once a minute: growth that levels off is warm-up, not a leak
            while any(t.is_alive() for t in threads):
                samples.append(round(rss_mb(proc.pid), 1))
                time.sleep(60)
        t0 = time.monotonic()
        [t.start() for t in threads]
        threading.Thread(target=sample_rss, daemon=True).start()
        [t.join(minutes * 60 + 180) for t in threads]
        wall = time.monotonic() - t0
        settle = time.monotonic() + 40
        depth = httpx.get(url + "/ready", timeout=10).json()["queue_depth"]
        while depth and time.monotonic() < settle:
            time.sleep(0.5)
            depth = httpx.get(url + "/ready", timeout=10).json()["queue_depth"]
        health = httpx.get(url + "/health", timeout=10).status_code
        final = httpx.post(url + "/v1/audio/speech", json={"input": "Hello there.", "response_format": "wav"},
                           timeout=60)
        rss_end = rss_mb(proc.pid)
    by_kind: dict = {}
    for (kind, result), n in sorted(outcomes.items()):
        by_kind.setdefault(kind, {})[result] = n
    expected = {"sdk": {"200", "503"}, "sdk_stream": {"200", "503"}, "hangup": {"hung up"},
                "midstream": {"hung up"}, "slow": {"read all", "left while reading"},
                "oversized": {"413"}, "chunked": {"413"}}
    errors = {f"{k}:{r}": n for (k, r), n in outcomes.items() if r not in expected[k]}
    doc = {"minutes": round(wall / 60, 2), "requests": sum(outcomes.values()), "clients": clients,
           "by_kind": by_kind, "errors": errors, "queue_depth_end": depth, "health_end": health,
           "normal_request_end": final.status_code, "rss_mb_start": round(rss_start, 1), "rss_mb_each_minute": samples, "rss_mb_end": round(rss_end, 1)}
    doc["passed"] = (depth == 0 and health == 200 and final.status_code == 200 and not errors
                     and rss_end - rss_start <= rss_growth_mb)
    return doc
