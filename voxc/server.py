"""`voxc serve`: an HTTP speech server over a built target (FastAPI on uvicorn).

    POST /v1/audio/speech   OpenAI-compatible: {"input", "voice", "style"|"emotion", "speed",
                            "response_format": "wav"|"pcm", "stream": bool} -> audio (16-bit mono);
                            stream=true sends chunks as the vocoder makes them (chunked transfer)
    GET  /v1/voices         the voices this target speaks with
    GET  /health            liveness and what is loaded
    GET  /metrics           Prometheus text: requests by status, latency and time-to-first-audio
                            histograms, queue depth, embedding-cache hits and misses

Synthesis runs in worker threads off the event loop, with a bounded number in flight and a bounded
queue behind them: past that a request gets 503 at once rather than waiting without end. Bodies are
size-limited; every bad request gets a JSON error with a 4xx status, never a traceback.
"""
from __future__ import annotations

import asyncio
import struct
import threading
import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from voxc.core.errors import VoxcError

MAX_BODY_BYTES = 64 * 1024
MAX_INPUT_CHARS = 4096
FORMATS = ("wav", "pcm")


def pcm16(wave: np.ndarray) -> bytes:
    return (np.clip(wave, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 16-bit mono RIFF header; data_bytes None (a stream of unknown length) writes 0xFFFFFFFF sizes."""
    n = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate,
                                                                             sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", n))


class SpeechRequest(BaseModel):
    """The body of POST /v1/audio/speech (OpenAI's fields, plus style/emotion and stream)."""
    model_config = ConfigDict(extra="forbid")
    input: str = Field(min_length=1, max_length=MAX_INPUT_CHARS)
    model: str | None = None
    voice: str | None = None
    style: str | None = Field(default=None, max_length=64)
    emotion: str | None = Field(default=None, max_length=64)
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    response_format: str = "wav"
    stream: bool = False


class Metrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self, voice):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        self.registry = CollectorRegistry()
        buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
        self.requests = Counter("voxc_requests", "speech requests by HTTP status", ["status"], registry=self.registry)
        self.latency = Histogram("voxc_request_seconds", "time to the last byte of audio", buckets=buckets,
                                 registry=self.registry)
        self.ttfa = Histogram("voxc_time_to_first_audio_seconds", "time to the first audio chunk", buckets=buckets,
                              registry=self.registry)
        self.audio = Counter("voxc_audio_seconds", "seconds of audio produced", registry=self.registry)
        self.queue = Gauge("voxc_queue_depth", "requests waiting or running", registry=self.registry)
        self.stage_ms = Counter("voxc_stage_ms", "milliseconds spent per pipeline step", ["stage"],
                                registry=self.registry)
        cache = voice.cache
        Gauge("voxc_cache_hits", "embedding cache hits", registry=self.registry).set_function(lambda: cache.hits)
        Gauge("voxc_cache_misses", "embedding cache misses", registry=self.registry).set_function(lambda: cache.misses)
        Gauge("voxc_cache_hit_rate", "embedding cache hit rate", registry=self.registry).set_function(
            lambda: cache.stats()["hit_rate"])

    def text(self) -> bytes:
        from prometheus_client import generate_latest
        return generate_latest(self.registry)


def create_app(voice, max_inflight: int = 2, max_queue: int = 32):
    """The ASGI app speaking with `voice` (a voxc.runtime.Voice)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException

    metrics = Metrics(voice)
    slots = threading.BoundedSemaphore(max_inflight)
    waiting = {"n": 0}
    lock = threading.Lock()
    app = FastAPI(title="voxc speech server", docs_url=None, redoc_url=None)

    def error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
        metrics.requests.labels(str(status)).inc()
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(HTTPException)
    async def http_error(_, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def internal(_, exc: Exception):
        return error(500, f"internal error ({type(exc).__name__}); see the server log", "server_error")

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY_BYTES):
            return error(413, f"request body over {MAX_BODY_BYTES} bytes")
        return await call_next(request)

    @app.get("/health")
    async def health():
        return {"status": "ok", "target": voice.target.manifest.target, "family": voice.family.name,
                "voices": len(voice.voices()), "streaming": voice.streaming is not None}

    @app.get("/v1/voices")
    async def voices():
        return {"voices": sorted(voice.voices()), "options": list(voice.speaking.options)}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.text(), media_type="text/plain; version=0.0.4")

    def options(req: SpeechRequest) -> dict:
        style = req.style if req.style is not None else req.emotion
        return {"style": style, "speed": req.speed if req.speed != 1.0 else None}

    def admit() -> bool:
        with lock:
            if waiting["n"] >= max_queue + max_inflight:
                return False
            waiting["n"] += 1
            metrics.queue.set(waiting["n"])
            return True

    def leave() -> None:
        with lock:
            waiting["n"] -= 1
            metrics.queue.set(waiting["n"])

    @app.post("/v1/audio/speech")
    async def speech(req: SpeechRequest):
        if req.response_format not in FORMATS:
            return error(400, f"response_format '{req.response_format}' is not supported: use {' or '.join(FORMATS)}")
        if req.voice is not None and req.voice not in voice.voices():
            return error(404, f"unknown voice '{req.voice}'; GET /v1/voices lists them")
        opts = options(req)
        try:                                   # fail fast on what cannot be spoken, before queueing
            voice.segments(req.input)
            voice.validate(req.voice, **opts)
        except VoxcError as exc:
            return error(400, str(exc))
        if not admit():
            return error(503, "the server is at capacity; retry shortly", "overloaded")
        t0 = time.perf_counter()
        if req.stream:
            return StreamingResponse(_streamed(req, opts, t0), media_type=_media(req.response_format, voice.sample_rate))
        try:
            await asyncio.to_thread(slots.acquire)
            try:
                sp = await asyncio.to_thread(voice.speak, req.input, req.voice, **opts)
            finally:
                slots.release()
        except VoxcError as exc:
            leave()
            return error(400, str(exc))
        leave()
        body = pcm16(sp.audio)
        if req.response_format == "wav":
            body = wav_header(sp.sample_rate, len(body)) + body
        elapsed = time.perf_counter() - t0
        metrics.latency.observe(elapsed)
        metrics.ttfa.observe(elapsed)
        metrics.audio.inc(sp.seconds)
        metrics.requests.labels("200").inc()
        for k, ms in sp.timings.items():
            metrics.stage_ms.labels(k).inc(ms)
        return Response(body, media_type=_media(req.response_format, voice.sample_rate),
                        headers={"x-voxc-audio-seconds": f"{sp.seconds:.3f}"})

    def _streamed(req: SpeechRequest, opts: dict, t0: float):
        """Sync generator (Starlette iterates it in a worker thread): header, then chunks as made."""
        slots.acquire()
        try:
            if req.response_format == "wav":
                yield wav_header(voice.sample_rate, None)
            first, samples, stats = True, 0, {}
            for chunk in voice.stream(req.input, req.voice, stats=stats, **opts):
                if first:
                    metrics.ttfa.observe(time.perf_counter() - t0)
                    first = False
                samples += len(chunk)
                yield pcm16(chunk)
            metrics.latency.observe(time.perf_counter() - t0)
            metrics.audio.inc(samples / voice.sample_rate)
            metrics.requests.labels("200").inc()
            for k, ms in stats.get("timings", {}).items():
                metrics.stage_ms.labels(k).inc(ms)
        finally:
            slots.release()
            leave()

    return app


def _media(fmt: str, sample_rate: int) -> str:
    return "audio/wav" if fmt == "wav" else f"audio/L16; rate={sample_rate}; channels=1"


def serve(folder, host: str = "127.0.0.1", port: int = 8000, runtime: str | None = None, threads: int | None = None,
          max_inflight: int = 4, max_queue: int = 32, cache_size: int = 256, batch_window_ms: float = 0.0,
          log_level: str = "warning") -> None:
    import uvicorn
    from voxc.runtime import Voice
    voice = Voice.open(folder, runtime=runtime, threads=threads, cache_size=cache_size,
                       batch_window_ms=batch_window_ms)
    app = create_app(voice, max_inflight=max_inflight, max_queue=max_queue)
    print(f"voxc: serving {folder} ({voice.family.name}, {len(voice.voices())} voices) on http://{host}:{port}",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)

