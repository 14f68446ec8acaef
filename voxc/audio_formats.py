"""Audio the speech server sends: the OpenAI `response_format`s, encoded as the audio is made.

The server (voxc/server.py) feeds each chunk of float32 audio at the voice's rate into an `Encoder`
and sends whatever bytes come out, so every format streams. Formats and the rate a client decodes:

    wav   the voice's own rate (16 kHz), 16-bit mono: the verified samples, unresampled
    flac  the voice's own rate (16 kHz), 16-bit mono: lossless, the verified samples
    pcm   24 kHz 16-bit little-endian mono, no header (OpenAI's pcm)
    mp3   48 kHz mono (LAME)
    opus  48 kHz mono, Ogg Opus (the rate every Opus decoder gives)
    aac   48 kHz mono, ADTS AAC

Encoding and resampling are PyAV's (FFmpeg's libraries bundled in its wheels, no ffmpeg binary): one
maintained library that writes all four compressed formats (libsndfile has no AAC) and whose muxers
write sequentially, so a streamed response needs no seek back. The lossy formats run at 48 kHz
because their encoder delay and final-frame padding are then at most ~45 ms of extra audio.
"""
from __future__ import annotations

import struct

import numpy as np

# format -> (media type, output rate; None: the voice's own rate, PyAV container, codec)
FORMATS = {
    "wav": ("audio/wav", None, None, None),
    "pcm": ("audio/pcm", 24000, None, None),
    "flac": ("audio/flac", None, "flac", "flac"),
    "mp3": ("audio/mpeg", 48000, "mp3", "libmp3lame"),
    "opus": ("audio/ogg", 48000, "ogg", "libopus"),
    "aac": ("audio/aac", 48000, "adts", "aac"),
}


def media_type(fmt: str) -> str:
    return FORMATS[fmt][0]


def output_rate(fmt: str, voice_rate: int) -> int:
    return FORMATS[fmt][1] or voice_rate


def pcm16(wave: np.ndarray) -> bytes:
    return (np.clip(wave, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 16-bit mono RIFF header; data_bytes None (a stream of unknown length) writes 0xFFFFFFFF sizes."""
    n = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate,
                                                                             sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", n))


class _Sink:
    """A write-only, non-seekable file for PyAV's muxer: bytes are taken as they are written."""

    def __init__(self):
        self.buf = bytearray()
        self.size = 0

    def write(self, b) -> int:
        self.buf += bytes(b)
        self.size += len(b)
        return len(b)

    def tell(self) -> int:
        return self.size

    def seekable(self) -> bool:
        return False

    def take(self) -> bytes:
        out, self.buf = bytes(self.buf), bytearray()
        return out


class Encoder:
    """One response's encoder: feed(float32 chunk) -> bytes to send now; finish() -> the last bytes.
    `total_samples` (known for a whole response) gives wav exact sizes; streamed wav says 'unknown'."""

    def __init__(self, fmt: str, voice_rate: int, total_samples: int | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt}")
        self.fmt, self.voice_rate = fmt, voice_rate
        _, rate, container, codec = FORMATS[fmt]
        self.rate = rate or voice_rate
        self._head = b""
        self._resampler = self._out = self._stream = None
        if fmt == "wav":
            self._head = wav_header(voice_rate, None if total_samples is None else 2 * total_samples)
            return
        import av
        if container is None:                           # pcm: only resampled
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
            return
        self._sink = _Sink()
        self._out = av.open(self._sink, "w", format=container,
                            options={"page_duration": "100000"} if container == "ogg" else {})
        self._stream = self._out.add_stream(codec, rate=self.rate, layout="mono")
        self._resampler = av.AudioResampler(format=self._stream.codec_context.format.name, layout="mono",
                                            rate=self.rate)

    def _frames(self, wave: np.ndarray | None):
        import av
        if wave is None:
            return self._resampler.resample(None)
        frame = av.AudioFrame.from_ndarray(np.clip(np.asarray(wave, np.float32), -1, 1).reshape(1, -1),
                                           format="flt", layout="mono")
        frame.sample_rate = self.voice_rate
        return self._resampler.resample(frame)

    def _encode(self, frames) -> bytes:
        if self._out is None:                           # pcm
            return b"".join(f.to_ndarray().astype("<i2").tobytes() for f in frames)
        for f in frames:
            for packet in self._stream.encode(f):
                self._out.mux(packet)
        return self._sink.take()

    def feed(self, wave: np.ndarray) -> bytes:
        head, self._head = self._head, b""
        if self.fmt == "wav":
            return head + pcm16(wave)
        if len(wave) == 0:
            return head
        return head + self._encode(self._frames(wave))

    def finish(self) -> bytes:
        head, self._head = self._head, b""
        if self.fmt == "wav":
            return head
        out = self._encode(self._frames(None))
        if self._out is not None:
            for packet in self._stream.encode(None):
                self._out.mux(packet)
            self._out.close()
            out += self._sink.take()
        return head + out

    def close(self) -> None:
        """Frees the encoder of a response that ended early (no bytes wanted)."""
        if self._out is not None:
            try:
                self._out.close()
            except Exception:  # noqa: BLE001 -- an unfinished stream's trailer may fail; nothing is sent
                pass
            self._out = None
