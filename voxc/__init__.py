"""voxc: compile an expressive TTS stack into verified per-target artifacts.

    import voxc
    target = voxc.build("cpu")                      # the trained voice (family voxc, preset light)
    target.passed, target.accepted()                # parity verdict, precision per graph and runtime
    target = voxc.open("artifacts/cpu")             # a built target (every file's sha256 checked)
    run = target.pipeline().run({"text": "Hello there.", "reference_mel": mel}, ["waveform"])
    run.values["waveform"], run.timings             # audio, and milliseconds per step
    voxc.families()                                 # model families it can build

Everything is imported on first use, so `import voxc` is cheap.
"""
from __future__ import annotations

__all__ = ["build", "build_request", "families", "open", "Target"]


def __getattr__(name: str):
    import importlib
    api = importlib.import_module("voxc.api")
    if name == "open":
        return api.open_target
    if name in __all__:
        return getattr(api, name)
    raise AttributeError(f"module 'voxc' has no attribute {name!r}")
