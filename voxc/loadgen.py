"""`voxc loadtest`: a load generator driving a real `voxc serve` over HTTP.

It starts the server as a child process on a free loopback port (one per server mode: default,
batch, no-cache), waits for /health, and runs N concurrent clients (1, 4, 16 ...) that each send
streamed requests (response_format pcm) over a realistic mix of utterance lengths taken from the
family's held-out texts (short, medium and long). Per level it reports throughput (audio seconds per
wall second), time to first audio (first PCM bytes) p50/p99, total latency p50/p99, the 503s (at
capacity) the clients met and their latency, the latency of 503s seen by a probe in a process of its
own (the clients' own CPU use delays what they measure), and the server's
per-stage time shares and cache hit rate from /metrics; results go into the target's bench.json
(key "serve": "mixed texts", or "fixed text" with --text) and sections of bench.md. The server is always stopped, also on failure.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from voxc.core.atomic import write_atomic
from voxc.core.errors import VoxcError

MODES = {"default": [], "batch": ["--batch-window-ms", "5"], "no-cache": ["--cache-size", "0"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(target: Path, extra: list[str] = (), timeout: float = 120.0, env: dict | None = None):
    """`voxc serve` on 127.0.0.1:<free port> for the duration of the block; yields its base URL."""
    with server_process(target, extra, timeout, env) as (url, _):
        yield url


@contextmanager
def server_process(target: Path, extra: list[str] = (), timeout: float = 120.0, env: dict | None = None):
    """Like running_server, yielding (base URL, the server's Popen) for callers that signal it."""
    import httpx
    port = free_port()
    cmd = [sys.executable, "-m", "voxc.cli", "serve", str(target), "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise VoxcError(f"the server exited ({proc.returncode}): {proc.stdout.read()[-300:].strip()}")
            try:
                if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise VoxcError(f"the server did not answer /health within {timeout:.0f} s")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def texts_for(target: Path) -> list[str]:
    """A mix of lengths: the family's held-out texts sorted by length, short/medium/long interleaved."""
    from voxc.api import open_target
    from voxc.models.family import family_of
    fam = family_of(open_target(target).config)
    texts = sorted({u.text for u in fam.items("parity") if getattr(u, "text", "")}, key=len)
    if not texts:
        raise VoxcError(f"family {fam.name} has no held-out texts to drive the server with")
    thirds = [texts[: len(texts) // 3] or texts, texts[len(texts) // 3: 2 * len(texts) // 3] or texts,
              texts[2 * len(texts) // 3:] or texts]
    return [thirds[i % 3][(i // 3) % len(thirds[i % 3])] for i in range(12)]


async def _client(url: str, texts: list[str], voice: str, n: int, offset: int, out: list):
    """n streamed pcm requests one after another; a 503 (at capacity) is recorded with its latency and
    the request is sent again after the server's Retry-After, as the OpenAI SDK does (so the server
    stays at capacity for the whole level)."""
    import httpx
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(timeout=300.0, limits=limits) as client:
        i = 0
        while i < n:
            text = texts[(offset + i) % len(texts)]
            t0 = time.perf_counter()
            first, size = None, 0
            async with client.stream("POST", url + "/v1/audio/speech",
                                     json={"input": text, "voice": voice, "response_format": "pcm",
                                           "stream": True}) as r:
                if r.status_code == 503:
                    await r.aread()
                    out.append({"status": 503, "latency_s": time.perf_counter() - t0})
                    try:
                        await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 5.0))
                    except ValueError:
                        await asyncio.sleep(1.0)
                    continue
                if r.status_code != 200:
                    raise VoxcError(f"the server answered {r.status_code}: {(await r.aread())[:200]!r}")
                rate = int(r.headers.get("x-voxc-sample-rate", "24000"))
                async for chunk in r.aiter_bytes():
                    if chunk and first is None:
                        first = time.perf_counter() - t0
                    size += len(chunk)
            out.append({"status": 200, "ttfa_s": first, "latency_s": time.perf_counter() - t0,
                        "audio_s": size / 2 / rate})
            i += 1


def probe_rejections(port: int, stop, out) -> None:
    """In a process of its own (so the clients' own load does not delay it): one small speech request
    every 50 ms while /ready says the server is full, until `stop` is set, reading only the status line;
    puts the latencies (ms) of the 503s on the queue `out`. What a new client sees when the server is
    full (and no extra load while it is not)."""
    import json as _json
    body = _json.dumps({"input": "Hello.", "response_format": "pcm"}).encode()
    req = (b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    lat = []
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                full = s.recv(64)[9:12] == b"503"
            if not full:
                time.sleep(0.05)
                continue
            t0 = time.perf_counter()
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(req)
                if s.recv(64)[9:12] == b"503":
                    lat.append((time.perf_counter() - t0) * 1e3)
        except OSError:
            pass
        time.sleep(0.05)
    out.put(lat)


def _pct(values, q) -> float | None:
    return round(float(np.percentile(np.array(values) * 1e3, q)), 2) if len(values) else None


def _level(url: str, texts: list[str], voice: str, clients: int, per_client: int, probe: bool = True) -> dict:
    import multiprocessing
    results: list = []

    async def main():
        await asyncio.gather(*[_client(url, texts, voice, per_client, 3 * c, results) for c in range(clients)])
    ctx = multiprocessing.get_context("spawn")
    probed, stop = ctx.Queue(), ctx.Event()
    prober = ctx.Process(target=probe_rejections, args=(int(url.rsplit(":", 1)[1]), stop, probed), daemon=True) \
        if probe else None
    if prober:
        prober.start()
    t0 = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - t0
    stop.set()
    probe_ms = probed.get(timeout=60) if prober else []
    if prober:
        prober.join(10)
    ok = [r for r in results if r["status"] == 200]
    busy = [r["latency_s"] for r in results if r["status"] == 503]
    audio_s = sum(r["audio_s"] for r in ok)
    ttfa, lat = [r["ttfa_s"] for r in ok if r["ttfa_s"] is not None], [r["latency_s"] for r in ok]
    return {"clients": clients, "requests": len(results), "ok": len(ok), "rejected_503": len(busy),
            "wall_s": round(wall, 3), "audio_s": round(audio_s, 3), "throughput": round(audio_s / wall, 3),
            "ttfa_ms_p50": _pct(ttfa, 50), "ttfa_ms_p99": _pct(ttfa, 99),
            "latency_ms_p50": _pct(lat, 50), "latency_ms_p99": _pct(lat, 99),
            "rejected_ms_p50": _pct(busy, 50), "rejected_ms_p99": _pct(busy, 99),
            "probe_503s": len(probe_ms), "probe_503_ms_p50": _pct(np.array(probe_ms) / 1e3, 50),
            "probe_503_ms_p99": _pct(np.array(probe_ms) / 1e3, 99)}


def scrape(url: str) -> dict:
    """The numbers of /metrics this report needs (cache hit rate, per-stage milliseconds)."""
    import httpx
    out = {}
    for line in httpx.get(url + "/metrics", timeout=5.0).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def run_loadtest(target: Path, clients: list[int], per_client: int, modes=("default",),
                 text: str | None = None, server_args: list[str] = ()) -> dict:
    import httpx
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise VoxcError(f"unknown server mode(s) {', '.join(unknown)}: choose from {', '.join(MODES)}")
    texts = [text] if text else texts_for(target)
    doc = {"texts": texts, "per_client": per_client, "modes": {}}
    for mode in modes:
        with running_server(target, [*MODES[mode], *server_args]) as url:
            voice = httpx.get(url + "/v1/voices", timeout=5.0).json()["voices"][0]
            _level(url, texts[:2], voice, 1, 2, probe=False)              # warm-up
            levels = [_level(url, texts, voice, c, per_client) for c in clients]
            m = scrape(url)
            stages = {k[len("voxc_stage_ms_total{stage=\""):-2]: v for k, v in m.items()
                      if k.startswith("voxc_stage_ms_total{")}
            total = sum(stages.values()) or 1.0
            doc["modes"][mode] = {"voice": voice, "levels": levels, "cache_hit_rate": m.get("voxc_cache_hit_rate"),
                                  "stage_share": {k: round(v / total, 4) for k, v in stages.items()}}
    doc["summary"] = {mode: [{k: lv[k] for k in ("clients", "ok", "rejected_503", "throughput", "ttfa_ms_p50",
                                                 "ttfa_ms_p99", "latency_ms_p50", "latency_ms_p99", "rejected_ms_p99", "probe_503s",
                                                 "probe_503_ms_p99")}
                             for lv in d["levels"]]
                      for mode, d in doc["modes"].items()}
    bench = target / "bench.json"
    current = json.loads(bench.read_text()) if bench.is_file() else {}
    current.setdefault("serve", {})["fixed text" if text else "mixed texts"] = doc
    write_atomic(bench, json.dumps(current, indent=1))
    md = target / "bench.md"
    head = md.read_text().split("\n## Serving")[0] if md.is_file() else f"# voxc bench: {target.name}\n"
    write_atomic(md, head.rstrip("\n") + "\n" + "".join(serve_markdown(k, d) for k, d in current["serve"].items()))
    return doc


def serve_markdown(kind: str, doc: dict) -> str:
    lines = ["", f"## Serving, {kind} (voxc loadtest: real HTTP, streamed pcm)", "",
             "Texts: " + " | ".join(doc["texts"][:3]) + (" ..." if len(doc["texts"]) > 3 else ""), ""]
    for mode, d in doc["modes"].items():
        lines += [f"### mode {mode} (voice {d['voice']}, cache hit rate {d['cache_hit_rate']})", "",
                  "| clients | requests | 503s | audio s / wall s | TTFA p50 ms | TTFA p99 ms | latency p50 ms | "
                  "latency p99 ms | 503 p99 ms (clients) | 503 p99 ms (probe) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for lv in d["levels"]:
            lines.append(f"| {lv['clients']} | {lv['requests']} | {lv.get('rejected_503', 0)} | {lv['throughput']} | "
                         f"{lv['ttfa_ms_p50']} | {lv['ttfa_ms_p99']} | {lv['latency_ms_p50']} | {lv['latency_ms_p99']} | "
                         f"{lv.get('rejected_ms_p99')} | {lv.get('probe_503_ms_p99')} |")
        if d["stage_share"]:
            lines += ["", "Stage shares: " + ", ".join(f"{k} {v:.1%}" for k, v in d["stage_share"].items())]
        lines.append("")
    return "\n".join(lines)
