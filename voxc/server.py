"""`voxc serve`: an HTTP speech server over a built target (FastAPI on uvicorn), an OpenAI drop-in.

    POST /v1/audio/speech   OpenAI's body (voxc/openai_api.py): input, model, voice, instructions,
                            response_format mp3|opus|aac|flac|wav|pcm (voxc/audio_formats.py), speed,
                            stream_format audio|sse; plus voxc's style/emotion and stream (default true:
                            chunked audio as it is made; false: one body with its length)
    GET  /v1/voices         the target's voices, and which voice each OpenAI voice name speaks with
    GET  /v1/models         the model names a request may give
    GET  /health            liveness: 503 when the synthesis pool made no progress for --stall-timeout
                            seconds while work waits (a wedged server a probe should restart)
    GET  /ready             readiness: 503 while at capacity or draining
    GET  /metrics           Prometheus text: requests by status, latency and time-to-first-audio
                            histograms, queue depth, embedding-cache hits and misses

Every speech request is admitted or refused (503) at once on the event loop (voxc/admission.py);
admitted work runs one step (segment or chunk) at a time in the server's own bounded pool. A request
gives its place back however it ends (done, error, the client left before or during the audio, a
reader too slow for --request-timeout), and a client that leaves cancels the steps still ahead of it.
Bodies are size- and time-limited while they arrive (voxc/http_guard.py); every bad request gets a
JSON error with a 4xx status, never a traceback. SIGTERM drains (stops accepting, lets in-flight
requests finish up to --drain-timeout, exits); a second SIGTERM exits at once.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time

from starlette.requests import Request       # at module level: FastAPI resolves the route's annotations here
from starlette.responses import Response

from voxc.admission import Capacity, Job
from voxc.audio_formats import Encoder, media_type, output_rate
from voxc.core.errors import VoxcError
from voxc.openai_api import SpeechRequest, check_model, models_list, resolve_voice, voice_map

MAX_BODY_BYTES = 64 * 1024


class Metrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self, voice):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        self.registry = CollectorRegistry()
        buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
        self.requests = Counter("voxc_requests", "speech requests by HTTP status (499: the client left)",
                                ["status"], registry=self.registry)
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


class ClientLeft(Exception):
    """The client disconnected before its audio was ready."""


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(receive, coro):
    """coro's result, or ClientLeft as soon as the client disconnects (coro is then cancelled)."""
    work, watch = asyncio.ensure_future(coro), asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        raise ClientLeft()
    finally:
        for t in (work, watch):
            t.cancel()
        await asyncio.gather(work, watch, return_exceptions=True)


def _sse(kind: str, **fields) -> bytes:
    return b"data: " + json.dumps({"type": kind, **fields}).encode() + b"\n\n"


def create_app(voice, workers: int = 4, queue: int = 32, request_timeout: float = 120.0, stall_timeout: float = 30.0,
               body_timeout: float = 10.0, api_key: str | None = None, cors_origins=(), docs: bool = False,
               voice_overrides: dict | None = None, default_voice: str | None = None):
    """The ASGI app speaking with `voice` (a voxc.runtime.Voice); app.state.capacity is its Capacity."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from voxc.core import audio
    from voxc.http_guard import AdmissionGate, BearerAuth, BodyGuard

    metrics = Metrics(voice)
    capacity = Capacity(workers, queue, stall_timeout, on_depth=metrics.queue.set)
    voices = voice.voices()
    mapping = voice_map(sorted(voices), voice_overrides or {})
    default = default_voice or voice.default_voice
    if default is not None and default not in voices:
        raise VoxcError(f"--default-voice {default} is not a voice of this target: choose from "
                        f"{', '.join(sorted(voices)[:12])}")
    app = FastAPI(title="voxc speech server", docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.capacity = capacity

    def error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        metrics.requests.labels(str(status)).inc()
        return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}},
                            status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body" and not str(p).startswith("function-"))
        return error(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}", param=where or None)

    @app.exception_handler(HTTPException)
    async def http_error(_, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def internal(_, exc: Exception):
        return error(500, f"internal error ({type(exc).__name__}); see the server log", "server_error")

    @app.get("/health")
    async def health():
        if capacity.stalled():
            idle = time.monotonic() - capacity.last_progress
            return JSONResponse({"status": "stalled", "detail": f"no synthesis step finished for {idle:.0f} s "
                                 f"with {capacity.busy + capacity.waiting} waiting or running"}, status_code=503)
        return {"status": "ok", "target": voice.target.manifest.target, "family": voice.family.name,
                "voices": len(voices), "streaming": voice.streaming is not None, "queue_depth": capacity.admitted}

    @app.get("/ready")
    async def ready():
        body = {"ready": capacity.ready, "draining": capacity.draining, "queue_depth": capacity.admitted,
                "capacity": capacity.limit}
        return JSONResponse(body, status_code=200 if capacity.ready else 503)

    @app.get("/v1/voices")
    async def list_voices():
        return {"voices": sorted(voices), "default": default, "openai_voices": mapping,
                "options": list(voice.speaking.options), "speed": list(voice.speaking.speed)}

    @app.get("/v1/models")
    async def list_models():
        return models_list(voices)

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.text(), media_type="text/plain; version=0.0.4")

    def options(req: SpeechRequest) -> dict:
        opts = {}
        if req.instructions:
            opts.update(voice.speaking.instructions(req.instructions, voice.cfg, voice.target.manifest.doc))
        style = req.style if req.style is not None else req.emotion
        if style is not None:
            opts["style"] = style
        if req.speed != 1.0:
            opts["speed"] = req.speed
        return opts

    def finished(status: str, t0: float, seconds: float | None = None, timings: dict | None = None) -> None:
        metrics.requests.labels(status).inc()
        if seconds is not None:
            metrics.latency.observe(time.perf_counter() - t0)
            metrics.audio.inc(seconds)
        for k, ms in (timings or {}).items():
            metrics.stage_ms.labels(k).inc(ms)

    @app.post("/v1/audio/speech")
    async def speech(request: Request, req: SpeechRequest):
        """Admitted already (AdmissionGate holds this request's place until the whole exchange ends)."""
        t0 = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + request_timeout
        try:
            check_model(req.model, voices)
            name = resolve_voice(req.voice_name if req.voice_name is not None or req.model not in voices
                                 else req.model, voices, mapping, default)
        except LookupError as exc:
            return error(404, str(exc).strip("'\""), param="voice" if "voice" in str(exc) else "model")
        except VoxcError as exc:
            return error(400, str(exc), param="voice")
        try:
            voice.speaking.check_speed(req.speed)
        except VoxcError as exc:
            return error(400, str(exc), param="speed")
        opts, fmt = options(req), req.response_format
        stats: dict = {"timings": {}}
        streamed = req.stream or req.stream_format == "sse"
        if streamed:
            gen = voice.stream(req.input, name, stats=stats, **opts)
        else:
            gen = audio.joined((w, p) for w, p, _ in voice.pieces(req.input, name, stats["timings"], **opts))
        samples, made = {"n": 0}, {}

        def encoder() -> Encoder:            # made on a pool thread, with the first chunk
            if "encoder" not in made:
                made["encoder"] = Encoder(fmt, voice.sample_rate)
            return made["encoder"]

        def step(chunk):
            samples["n"] += len(chunk)
            if not streamed:
                return chunk
            data = encoder().feed(chunk)
            if req.stream_format == "sse":
                return _sse("speech.audio.delta", audio=base64.b64encode(data).decode()) if data else b""
            return data
        job = Job(capacity, gen, step)
        try:
            async with asyncio.timeout_at(deadline):
                if not streamed:
                    body = await _unless_disconnected(request.receive, _whole(capacity, job, fmt, voice))
                else:
                    first = await _unless_disconnected(request.receive, job.next())
        except VoxcError as exc:
            job.close()
            return error(400, str(exc))
        except ClientLeft:
            job.close()
            finished("499", t0)
            return Response(status_code=204)
        except TimeoutError:
            job.close()
            return error(504, f"the speech was not ready within the server's request timeout "
                              f"({request_timeout:g} s); send a shorter text or retry later", "timeout")
        except BaseException:
            job.close()
            raise
        metrics.ttfa.observe(time.perf_counter() - t0)
        if not streamed:
            finished("200", t0, samples["n"] / voice.sample_rate, stats["timings"])
            return Response(body, media_type=media_type(fmt), headers={
                "x-voxc-audio-seconds": f"{samples['n'] / voice.sample_rate:.3f}",
                "x-voxc-sample-rate": str(output_rate(fmt, voice.sample_rate))})

        async def rest():
            if first is not None:
                yield first
                while (data := await job.next()) is not None:
                    if data:
                        yield data
            tail = await capacity.run(lambda: encoder().finish(), priority=job.priority)
            if req.stream_format == "sse":
                if tail:
                    yield _sse("speech.audio.delta", audio=base64.b64encode(tail).decode())
                words = len(req.input.split())
                yield _sse("speech.audio.done", usage={"input_tokens": words, "output_tokens": 0,
                                                       "total_tokens": words})
            elif tail:
                yield tail

        def done(status: str) -> None:
            job.close()
            finished(status, t0, samples["n"] / voice.sample_rate if status == "200" else None,
                     stats.get("timings"))
        return AudioStream(rest(), deadline, done,
                           "text/event-stream" if req.stream_format == "sse" else media_type(fmt),
                           {"x-voxc-sample-rate": str(output_rate(fmt, voice.sample_rate))})

    count = lambda status: metrics.requests.labels(str(status)).inc()      # noqa: E731
    guarded = AdmissionGate(BodyGuard(app, MAX_BODY_BYTES, body_timeout, on_reject=count), capacity,
                            "/v1/audio/speech", on_reject=count)
    outer = BearerAuth(guarded, api_key) if api_key else guarded
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware
        outer = CORSMiddleware(outer, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                               allow_headers=["authorization", "content-type"])
    outer.state = app.state
    return outer


async def _whole(capacity: Capacity, job: Job, fmt: str, voice) -> bytes:
    """Every step of a non-streamed request, then the whole body encoded (wav with exact sizes)."""
    import numpy as np
    chunks = []
    while (chunk := await job.next()) is not None:
        chunks.append(chunk)
    wave = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    def encode() -> bytes:
        enc = Encoder(fmt, voice.sample_rate, total_samples=len(wave))
        return enc.feed(wave) + enc.finish()
    return await capacity.run(encode, priority=job.priority)


class AudioStream(Response):
    """A chunked response whose end, however it comes (all sent, the client left, an error, the request's
    deadline), calls done(status) exactly once: the request's place and its synthesis are given back."""

    def __init__(self, body, deadline: float, done, media: str, headers: dict):
        self._chunks, self.deadline, self.done, self._media, self._extra = body, deadline, done, media, headers
        self.background = None
        self.status_code = 200

    async def _pump(self, send) -> None:
        headers = [(b"content-type", self._media.encode())] + [(k.encode(), v.encode()) for k, v in self._extra.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for data in self._chunks:
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope, receive, send) -> None:
        status = "499"
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            async with asyncio.timeout_at(self.deadline):
                done, _ = await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
            if pump in done:
                exc = pump.exception()
                if exc is None:
                    status = "200"
                elif not isinstance(exc, OSError):
                    status = "500"
                    raise exc
        except TimeoutError:
            status = "504"              # the response stays incomplete: the server closes the connection
        finally:
            for t in (pump, watch):
                t.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)
            await self._chunks.aclose()
            self.done(status)


def check_host(host: str) -> None:
    """A host to bind: an IP address or a name that resolves (one-line error otherwise)."""
    import ipaddress
    import socket
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        raise VoxcError(f"--host {host!r} is neither an IP address nor a name this machine resolves; "
                        "give e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The start-up warning for a server reachable from other machines with no API key."""
    if api_key or is_loopback(host):
        return None
    return (f"voxc: warning: serving on {host} (reachable from other machines) without an API key; anyone who "
            "can reach it may use it -- pass --api-key or set VOXC_API_KEY")


def check_port_free(host: str, port: int) -> None:
    """Refuses, in one line, a host/port that cannot be listened on (before the voice is loaded)."""
    import socket
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        raise VoxcError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or --host") \
            from None


def is_loopback(host: str) -> bool:
    import ipaddress
    import socket
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (socket.gaierror, ValueError, UnicodeError):
        return False


def serve(folder, host: str = "127.0.0.1", port: int = 8000, runtime: str | None = None, threads: int | None = None,
          workers: int = 4, queue: int = 32, cache_size: int = 256, batch_window_ms: float = 0.0,
          request_timeout: float = 120.0, drain_timeout: float = 30.0, stall_timeout: float = 30.0,
          header_timeout: float = 10.0, body_timeout: float = 10.0, api_key: str | None = None, cors_origins=(),
          docs: bool = False, voice_overrides: dict | None = None, default_voice: str | None = None,
          log_level: str = "warning") -> None:
    import uvicorn
    from voxc.http_guard import HeaderTimeoutH11
    from voxc.runtime import Voice
    check_host(host)
    check_port_free(host, port)
    voice = Voice.open(folder, runtime=runtime, threads=threads, cache_size=cache_size,
                       batch_window_ms=batch_window_ms)
    app = create_app(voice, workers=workers, queue=queue, request_timeout=request_timeout,
                     stall_timeout=stall_timeout, body_timeout=body_timeout, api_key=api_key,
                     cors_origins=cors_origins, docs=docs, voice_overrides=voice_overrides, default_voice=default_voice)
    capacity: Capacity = app.state.capacity
    if voice.default_voice is not None:       # warm the runtimes before the first user waits for them
        voice.speak("Hello.", default_voice or voice.default_voice)
    protocol = type("VoxcH11", (HeaderTimeoutH11,), {"header_timeout": header_timeout})
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, http=protocol, lifespan="off",
                            timeout_graceful_shutdown=max(1, int(round(drain_timeout))), timeout_keep_alive=5)

    class Draining(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            if self.should_exit:                 # a second signal: no more waiting
                print("voxc: second signal: exiting now", file=sys.stderr, flush=True)
                os._exit(1)
            capacity.draining = True
            self._captured_signals.clear()      # uvicorn re-raises captured signals on return: exit 0 instead
            print(f"voxc: draining: no new requests; {capacity.admitted} in flight get up to {drain_timeout:g} s",
                  file=sys.stderr, flush=True)
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    warning = exposure_warning(host, api_key)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    print(f"voxc: serving {folder} ({voice.family.name}, {len(voice.voices())} voices) on http://{host}:{port}",
          flush=True)
    Draining(config).run()
    capacity.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)                              # threads still inside a runtime call must not hold the exit
