"""Parity for artifacts whose runtime is elsewhere (Core ML on macOS, TensorRT on the GPU/Jetson).

The parity stage of such a backend does what this host can: it writes the golden inputs and the
PyTorch reference outputs over the spec's length sweep (golden.npz, shipped in the device bundle),
runs the host checks (TensorRT: the exact ONNX handed to TensorRT, gated with ONNX Runtime; Core
ML: the package reloaded as a spec and compared with the ModelSpec), and adds one *deferred* row
per sweep point. Deferred rows have passed = None: they never count as a pass and never fail the
host build; `voxc report --merge` replaces them with the device's rows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from voxc.compiler import parity
from voxc.compiler.plan import ParityParams
from voxc.core import target as schema

DEFERRED = schema.DEFERRED
is_deferred = schema.is_deferred
gate_rows = schema.gating            # not deferred to a device, not of a precision the policy rejected


def host_passed(rows: list[dict]) -> bool:
    return all(r["passed"] for r in gate_rows(rows))


def status(rows: list[dict]) -> str:
    """'fail' if any gate failed, else 'deferred' if device checks are outstanding, else 'pass'."""
    return schema.status_of(rows)


def golden_key(i: int, side: str, name: str) -> str:
    return f"p{i}.{side}.{name}"


def write_golden(path: Path, spec, module, points: list[tuple[int, int]]) -> None:
    """Inputs (as parity.point_inputs makes them) and PyTorch FP32 outputs at every sweep point."""
    arrays = {}
    for i, (b, n) in enumerate(points):
        feeds = parity.point_inputs(spec, b, n)
        ref = parity.torch_outputs(module, spec, feeds)
        sizes = spec.sizes_of(feeds)
        for t in spec.outputs:
            if list(ref[t.name].shape) != list(spec.output_shape(t, sizes)):
                raise ValueError(f"{spec.name}: reference output {t.name} has shape {list(ref[t.name].shape)}")
        arrays.update({golden_key(i, "in", k): v for k, v in feeds.items()})
        arrays.update({golden_key(i, "out", k): v for k, v in ref.items()})
    np.savez_compressed(path, **arrays)


def deferred_rows(spec, precision: str, runtime: str, points, reason: str) -> list[dict]:
    return [{"model": spec.name, "precision": precision, "runtime": runtime, "length": n, "batch": b,
             "output": "*", "metric": "device_parity", "value": None, "tolerance": None, "passed": None,
             "status": DEFERRED, "reason": reason} for b, n in points]


def parity_stage(out: Path, params: ParityParams, inputs: dict, module) -> dict:
    """The parity stage for a backend whose parity runs on a device (see the module docstring)."""
    from voxc.compiler.graph import read_record
    from voxc.models.family import model_spec
    from voxc.targets import backend
    spec = model_spec(params.model, params.config)
    be = backend(params.runtime)
    points = [tuple(p) for p in params.sweep]
    art = inputs["artifact"]
    record = read_record(art)
    write_golden(out / "golden.npz", spec, module, points)
    precision = params.precision
    rows, reason = be.host_checks(spec, art, record, precision, params.options or {},
                                  lambda runner, runtime: parity.check(spec, module, runner, precision, runtime, points))
    if reason is None:          # the device runtime is here: its rows are real
        return {"passed": host_passed(rows), "rows": rows}
    rows += deferred_rows(spec, params.precision, params.runtime, points, reason)
    return {"passed": host_passed(rows), "rows": rows, "deferred_reason": reason}
