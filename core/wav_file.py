"""Speech written to a .wav file as it is made (`voxc speak`, `voxc synth`): memory stays flat however
long the text, the file appears whole or not at all (core/atomic.py), and a write that fails -- a full
disk, a file-size limit, a vanished folder -- is one line naming the file and what to do, never a
libsndfile traceback. soundfile is imported on first use."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from voxc.core.atomic import atomic_path
from voxc.core.errors import VoxcError


def _cannot_write(out: Path, tmp: Path, exc: Exception) -> VoxcError:
    """libsndfile says only "System error": name the likely cause from the disk's free space and the
    process's file-size limit."""
    import resource
    why = getattr(exc, "strerror", None) or str(exc).strip().rstrip(".") or type(exc).__name__
    try:
        st = os.statvfs(out.parent)
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if st.f_bavail * st.f_frsize < 1 << 20:
            why = "no space left on device"
        elif limit != resource.RLIM_INFINITY and tmp.exists() and tmp.stat().st_size + (1 << 16) > limit:
            why = f"the file-size limit of {limit} bytes (ulimit -f) is reached"
    except OSError:
        pass
    return VoxcError(f"cannot write {out} ({why}); free some space there or pass -o a file on another disk")


def write_wav(out: str | Path, chunks, sample_rate: int) -> int:
    """Writes float chunks (clipped to [-1, 1]) as 16-bit mono PCM into `out`; returns the samples written."""
    import soundfile as sf
    out = Path(out)
    samples = 0
    failures = (OSError, sf.SoundFileRuntimeError)
    with atomic_path(out) as tmp:
        try:
            f = sf.SoundFile(str(tmp), "w", sample_rate, 1, subtype="PCM_16", format="WAV")
        except failures as exc:
            raise _cannot_write(out, tmp, exc) from None
        try:
            for chunk in chunks:                 # synthesis errors pass through as they are
                try:
                    f.write(np.clip(chunk, -1, 1))
                except failures as exc:
                    raise _cannot_write(out, tmp, exc) from None
                samples += len(chunk)
        finally:
            try:
                f.close()
            except failures as exc:
                raise _cannot_write(out, tmp, exc) from None
    return samples
