"""Speak from the artifacts: text -> waveform over a built target folder, without PyTorch.

    voice = voxc.Voice.open("artifacts/cpu")                   # sha256-checked, parity must have passed
    speech = voice.speak("Hello there.", voice="espk_us", style="neutral")
    speech.audio, speech.sample_rate, speech.timings           # float32 wave, Hz, ms per pipeline step
    for chunk in voice.stream("A long text ...", voice="espk_us"): ...   # audio chunks as they are made

The family's pipeline (models/pipeline.py) runs on the target's accepted artifacts. Text is split
into segments that fit the graphs' maximum lengths (models/segment.py) and joined with pauses and
short fades, so nothing is truncated and memory follows the longest segment, not the text. Speaker
and style embeddings are cached in an LRU keyed by the content hash of the reference audio and the
style (`EmbeddingCache`). Streaming runs the last graph (the vocoder) on chunks of frames with enough
context either side to cover its receptive field (targets/split.py), as soon as the frames exist;
the chunking the build's streaming gate accepted is used (parity.json, chain.stream).
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxc.core import audio
from voxc.core.errors import VoxcError
from voxc.core.hashing import sha256_bytes
from voxc.core.target import StreamSettings
from voxc.models import segment, speaking


class EmbeddingCache:
    """A bounded LRU of embeddings with hit/miss counters (thread-safe)."""

    def __init__(self, max_items: int = 256):
        if max_items < 0:
            raise VoxcError(f"cache size must be >= 0, got {max_items}")
        self.max_items, self.hits, self.misses = max_items, 0, 0
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, key, value) -> None:
        if self.max_items == 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> dict:
        total = self.hits + self.misses
        return {"items": len(self), "max_items": self.max_items, "hits": self.hits, "misses": self.misses,
                "hit_rate": round(self.hits / total, 4) if total else 0.0}


def option_key(value) -> str:
    """A cache key part for one option: content hash for audio, the value itself otherwise."""
    if value is None:
        return "-"
    if isinstance(value, np.ndarray):
        return "sha256:" + sha256_bytes(np.ascontiguousarray(value, np.float32).tobytes())
    return repr(value)


class ChunkBatcher:
    """Dynamic batching of the streamed graph's chunks across concurrent requests: chunks arriving
    within `window_ms` of the first are stacked along the batch axis when their shapes agree (interior
    chunks all share one length), up to `max_batch`, run once, and split back. Each item's output is
    its own rows of the batch, so it equals the unbatched run up to the runtime's arithmetic (tested).
    Only this graph is batched: upstream graphs see one utterance of its own length per request."""

    def __init__(self, runner, window_ms: float, max_batch: int):
        import queue
        self.runner, self.window, self.max_batch = runner, window_ms / 1e3, max(1, max_batch)
        self.queue: "queue.Queue" = queue.Queue()
        self.batches, self.items = 0, 0
        self.active = 0                 # streams now vocoding: nobody else to wait for when it is 1
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, daemon=True, name="voxc-batcher").start()

    def infer(self, feeds: dict) -> dict:
        from concurrent.futures import Future
        fut: Future = Future()
        self.queue.put((feeds, fut))
        return fut.result()

    def _loop(self) -> None:
        import queue
        while True:
            pending = [self.queue.get()]
            deadline = time.perf_counter() + self.window
            while len(pending) < min(self.max_batch, max(self.active, 1)):   # wait only for streams that exist
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    pending.append(self.queue.get(timeout=left))
                except queue.Empty:
                    break
            groups: dict = {}
            for feeds, fut in pending:
                groups.setdefault(tuple((k, v.shape) for k, v in sorted(feeds.items())), []).append((feeds, fut))
            for items in groups.values():
                try:
                    if len(items) == 1:
                        items[0][1].set_result(self.runner.infer(items[0][0]))
                        continue
                    stacked = {k: np.concatenate([f[k] for f, _ in items], axis=0) for k in items[0][0]}
                    out = self.runner.infer(stacked)
                    for i, (_, fut) in enumerate(items):
                        fut.set_result({k: v[i:i + 1] for k, v in out.items()})
                    self.batches += 1
                    self.items += len(items)
                except Exception as exc:  # noqa: BLE001 -- the failure belongs to the requests, not this thread
                    for _, fut in items:
                        if not fut.done():
                            fut.set_exception(exc)

    def joined(self):
        """Context manager around one stream's use of the batcher (counts the streams it may wait for)."""
        from contextlib import contextmanager

        @contextmanager
        def scope():
            with self._lock:
                self.active += 1
            try:
                yield self
            finally:
                with self._lock:
                    self.active -= 1
        return scope()

    def stats(self) -> dict:
        return {"batches": self.batches, "batched_items": self.items,
                "mean_batch": round(self.items / self.batches, 3) if self.batches else 0.0}


@dataclass
class Speech:
    audio: np.ndarray
    sample_rate: int
    timings: dict                      # pipeline step -> milliseconds (summed over segments)
    segments: list = field(default_factory=list)   # [{"text", "seconds", "frames"}]
    ttfa_ms: float | None = None       # time to first audio (streaming)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


def _add(total: dict, timings: dict) -> None:
    for k, ms in timings.items():
        total[k] = total.get(k, 0.0) + ms


class Voice:
    """A built target, ready to speak. Use Voice.open(folder)."""

    def __init__(self, target, runtime: str | None = None, threads: int | None = None, cache_size: int = 256,
                 batch_window_ms: float = 0.0, voices: dict | None = None):
        from voxc.models.family import family_of
        self.target = target
        self.cfg = target.config
        self.family = family_of(self.cfg)
        if self.family.speaking is None:
            raise VoxcError(f"family {self.family.name} declares no run-time speech (Family.speaking)")
        self.speaking = self.family.speaking
        self.pipeline = target.pipeline(runtime, threads)
        self.cache = EmbeddingCache(cache_size)
        self._voices = dict(voices) if voices is not None else None     # None: the family's built-in voices
        self.streaming = self._streaming()
        self.batcher = None
        if batch_window_ms > 0 and self.streaming is not None:
            dims = target.manifest.models[self.streaming.graph].io.get("dims") or {}
            self.batcher = ChunkBatcher(self.pipeline.runners[self.streaming.graph], batch_window_ms,
                                        int(dims.get("batch", {}).get("max", 1)))

    @classmethod
    def open(cls, folder: str | Path, runtime: str | None = None, threads: int | None = None,
             cache_size: int = 256, batch_window_ms: float = 0.0) -> "Voice":
        """A target folder built by `voxc build`; refuses altered files and targets whose parity did not pass."""
        from voxc.api import open_target
        target = open_target(folder)
        if target.status != "pass":
            raise VoxcError(f"{folder}: parity did not pass (status {target.status}); a voice speaks only from a "
                            f"target whose artifacts passed their gates -- see {Path(folder) / 'parity.md'}")
        return cls(target, runtime, threads, cache_size, batch_window_ms)

    @property
    def sample_rate(self) -> int:
        """The rate of the audio this target makes (its waveform graph's spec, recorded in the manifest)."""
        rates = [m["sample_rate"] for m in self.target.manifest.doc.get("models", {}).values()
                 if isinstance(m, dict) and m.get("sample_rate")]
        return int(rates[-1]) if rates else audio.SAMPLE_RATE

    # ---- voices -------------------------------------------------------------------------------------

    def voices(self) -> dict:
        """Voice name -> its options (built-in voices of the family, plus those added)."""
        if self._voices is None:
            self._voices = dict(self.speaking.builtin_voices(self.cfg))
        return self._voices

    @property
    def default_voice(self) -> str | None:
        """The voice a request without one speaks with: the family's first built-in voice."""
        return next(iter(self.voices()), None)

    def add_voice(self, name: str, **options) -> None:
        self.voices()[name] = options

    def _options(self, voice: str | None, options: dict) -> dict:
        unknown = set(options) - set(self.speaking.options) - {"speaker", "voice"}
        if unknown:
            raise VoxcError(f"unknown option(s) {', '.join(sorted(unknown))} for family {self.family.name}: "
                            f"use {', '.join(self.speaking.options)}")
        if options.get("speed") is not None:
            self.speaking.check_speed(options["speed"])
        who = {k for opts in self.voices().values() for k in opts}      # what names a speaker (speaker_ref ...)
        if voice is None and not any(options.get(k) is not None for k in who):
            voice = self.default_voice
        base = {}
        if voice is not None:
            if voice not in self.voices():
                raise VoxcError(f"unknown voice '{voice}': choose from {', '.join(sorted(self.voices())[:12])}"
                                f"{' ...' if len(self.voices()) > 12 else ''}")
            base = dict(self.voices()[voice])
        return {**base, **{k: v for k, v in options.items() if v is not None}}

    def validate(self, voice: str | None = None, **options) -> None:
        """Raises the one-line error a request with these options would meet (before any synthesis)."""
        self.speaking.make_inputs(self._options(voice, options), self.cfg, set(), self.target.manifest.doc)

    # ---- text -> segments that fit ------------------------------------------------------------------

    def fits(self, text: str) -> bool:
        """Whether a text's front-end values fit the graphs' maximum lengths."""
        return speaking.fits(self.pipeline, self.cfg, self.speaking.lengths, text)

    def segments(self, text: str) -> list[segment.Segment]:
        return speaking.segments(self.pipeline, self.cfg, self.speaking.lengths, text)

    # ---- one segment ---------------------------------------------------------------------------------

    def _given(self, options: dict) -> tuple[dict, dict]:
        """Cached embeddings for these options, and the cache keys of those still to compute."""
        given, todo = {}, {}
        for value, names in self.speaking.cached.items():
            key = (self.family.name, value) + tuple(option_key(options.get(n)) for n in names)
            hit = self.cache.get(key)
            if hit is None:
                todo[value] = key
            else:
                given[value] = hit
        return given, todo

    def _pieces(self, text: str, options: dict, timings: dict, want: list[str]):
        """Pipeline values producing `want` for one segment (split while its frames overflow), with the
        embeddings taken from and put into the cache."""
        def upto(t: str, first_want: list) -> dict:
            given, todo = self._given(options)
            inputs = {"text": t, **given,
                      **self.speaking.make_inputs(options, self.cfg, set(given), self.target.manifest.doc)}
            run = self.pipeline.run(inputs, first_want)
            for value, key in todo.items():
                if value in run.values:
                    self.cache.put(key, run.values[value])
            _add(timings, run.timings)
            return run.values
        for run in speaking.pieces(self.pipeline, self.cfg, text, upto, want):
            _add(timings, run.timings)
            yield run.values

    # ---- speaking ------------------------------------------------------------------------------------

    def pieces(self, text: str, voice: str | None = None, timings: dict | None = None, **options):
        """(wave, pause after, info) per synthesized piece of `text`, in order: what speak() joins, for
        callers that write audio as it comes (memory stays flat however long the text)."""
        opts = self._options(voice, options)
        out = self.family.chain.output
        timings = {} if timings is None else timings
        for seg in self.segments(text):
            parts = list(self._pieces(seg.text, opts, timings, [out]))
            for i, values in enumerate(parts):
                w = np.asarray(values[out], np.float32).reshape(-1)
                yield w, (seg.pause_after if i == len(parts) - 1 else 0.0), \
                    {"text": seg.text, "seconds": round(len(w) / self.sample_rate, 3), "frames": int(values.get("frames", 0))}

    def speak(self, text: str, voice: str | None = None, **options) -> Speech:
        """The whole utterance at once: every segment synthesized, then joined."""
        timings: dict = {}
        pieces = list(self.pieces(text, voice, timings, **options))
        wave = audio.join_segments([w for w, _, _ in pieces], [p for _, p, _ in pieces])
        return Speech(wave, self.sample_rate, {k: round(v, 3) for k, v in timings.items()}, [i for _, _, i in pieces])

    def stream(self, text: str, voice: str | None = None, stats: dict | None = None, **options):
        """Audio chunks (float32 numpy) as soon as each is made: the vocoder runs on chunks of frames
        while later segments wait. `stats` (a dict) receives ttfa_ms, timings and chunk count."""
        from voxc.targets.split import stream as stream_chunks
        opts = self._options(voice, options)
        st = self.streaming
        stats = {} if stats is None else stats
        timings: dict = {}
        t0 = time.perf_counter()
        chunks = 0
        segs = segment.quick_start(self.segments(text))
        for si, seg in enumerate(segs):
            want = [st.input] if st else [self.family.chain.output]
            for values in self._pieces(seg.text, opts, timings, want):
                if st is None:          # no accepted chunking: each segment whole
                    parts = [values[self.family.chain.output]]
                else:
                    tv = time.perf_counter()
                    infer = (self.batcher or self.pipeline.runners[st.graph]).infer
                    parts = stream_chunks(infer, {st.input: values[st.input]},
                                          st.input, st.output, st.hop, st.chunk, st.first, st.context, st.min_len)
                with (self.batcher.joined() if self.batcher and st else contextlib.nullcontext()):
                    for y in parts:
                        if chunks == 0:
                            stats["ttfa_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
                        chunks += 1
                        yield np.asarray(y, np.float32).reshape(-1)
                if st is not None:
                    timings[st.graph] = timings.get(st.graph, 0.0) + (time.perf_counter() - tv) * 1e3
            if si + 1 < len(segs) and seg.pause_after > 0:
                yield np.zeros(int(round(seg.pause_after * self.sample_rate)), np.float32)
        stats.update(timings={k: round(v, 3) for k, v in timings.items()}, chunks=chunks,
                     total_ms=round((time.perf_counter() - t0) * 1e3, 3))

    # ---- streaming settings -------------------------------------------------------------------------

    def _streaming(self) -> StreamSettings | None:
        """The chunking of the family's last graph: the build's accepted settings (parity.json), else None."""
        for s in self.target.parity.streams().values():      # validated when the target was opened
            if s.passed:
                return s
        return None

