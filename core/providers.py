"""ONNX Runtime execution providers as a setting: which ones a session uses, and one clear line when the
installed onnxruntime lacks one.

Every ONNX Runtime session voxc opens (artifact runners, the bundle's stand-in runner, the simplifier's
check and DNSMOS) takes its providers from here: a build's from the target profile
([options.onnxruntime] providers, recorded with the artifact), any other run's from `--providers` or
the VOXC_ORT_PROVIDERS environment variable (comma-separated, most preferred first), else the CPU
provider. A provider the installed onnxruntime does not have, or one that fails to load, is an error
naming what is missing and what to install -- never a quiet fall back to the CPU. Stdlib only at
import (onnxruntime is imported when a session is made), so device bundles ship it.
"""
from __future__ import annotations

import os

from voxc.core.errors import VoxcError

ENV = "VOXC_ORT_PROVIDERS"
CPU = "CPUExecutionProvider"
DEFAULT = (CPU,)
# what to install for a provider the CPU package lacks (both packages own the `onnxruntime` module)
GPU_PACKAGE = "onnxruntime-gpu"
INSTALL = (f"install {GPU_PACKAGE} in place of onnxruntime (pip uninstall -y onnxruntime && pip install "
           f"{GPU_PACKAGE}: both own the `onnxruntime` module, so never install both)")
NEEDS = {"CUDAExecutionProvider": "CUDA 12 and cuDNN 9 on the loader path",
         "TensorrtExecutionProvider": "CUDA, cuDNN and TensorRT 10 libraries on the loader path"}


def _ort():
    import onnxruntime
    return onnxruntime


def parse(text: str | list | tuple | None) -> list[str]:
    """Provider names from a comma-separated string or a list, in order. Short names are accepted
    (cuda, tensorrt, cpu, ...): each becomes the onnxruntime name it abbreviates."""
    items = [p.strip() for p in (text.split(",") if isinstance(text, str) else (text or [])) if str(p).strip()]
    known = list(_ort().get_all_providers())
    out = []
    for item in items:
        match = next((p for p in known if p.lower() in (item.lower(), item.lower() + "executionprovider")), None)
        if match is None:
            raise VoxcError(f"unknown ONNX Runtime execution provider '{item}': choose from {', '.join(known)}")
        out.append(match)
    return list(dict.fromkeys(out))


def missing(wanted) -> list[str]:
    available = set(_ort().get_available_providers())
    return [p for p in wanted if p not in available]


def check(wanted) -> list[str]:
    """The providers, every one available in this onnxruntime; else one line saying what to install."""
    wanted = list(wanted) or list(DEFAULT)
    lacking = missing(wanted)
    if lacking:
        ort = _ort()
        needs = "; ".join(f"{p} also needs {NEEDS[p]}" for p in lacking if p in NEEDS)
        raise VoxcError(f"onnxruntime {ort.__version__} here has no {', '.join(lacking)} (it has "
                        f"{', '.join(ort.get_available_providers())}): {INSTALL}" + (f"; {needs}" if needs else ""))
    return wanted


def from_env() -> list[str] | None:
    """The providers VOXC_ORT_PROVIDERS names (None when unset)."""
    text = os.environ.get(ENV, "").strip()
    return parse(text) if text else None


def chosen(record_providers=None) -> list[str]:
    """The providers a session uses: the build record's, else VOXC_ORT_PROVIDERS, else the CPU's;
    checked against this onnxruntime."""
    return check(parse(record_providers) if record_providers else (from_env() or list(DEFAULT)))


def confirm(session, wanted) -> None:
    """onnxruntime skips a provider that fails to load (e.g. libcudart not found) and runs on the CPU:
    refuse that session instead."""
    active = set(session.get_providers())
    dropped = [p for p in wanted if p not in active]
    if dropped:
        needs = "; ".join(f"{p} needs {NEEDS[p]}" for p in dropped if p in NEEDS)
        raise VoxcError(f"onnxruntime could not load {', '.join(dropped)} (the session runs on "
                        f"{', '.join(session.get_providers())})" + (f": {needs}" if needs else ""))


def session(model, options, wanted=None):
    """An InferenceSession on exactly the chosen providers (model: a path or the model's bytes)."""
    wanted = chosen(wanted)
    sess = _ort().InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=wanted)
    confirm(sess, wanted)
    return sess


def use(text: str | None) -> list[str] | None:
    """`--providers`: check the named providers here and make them every later session's (it sets
    VOXC_ORT_PROVIDERS for this process and the processes it starts). None leaves the setting as it is."""
    if not text:
        return None
    wanted = check(parse(text))
    os.environ[ENV] = ",".join(wanted)
    return wanted


HELP = ("ONNX Runtime execution providers, most preferred first (comma-separated, e.g. cuda,cpu or "
        "CUDAExecutionProvider,CPUExecutionProvider; default: $VOXC_ORT_PROVIDERS, else the CPU's)")
