"""Core ML backend (target `apple`): PyTorch module -> ML Program .mlpackage, checked as a spec here.

coremltools no longer converts ONNX, so the artifact stage hands this backend the PyTorch module.
Dynamic dims come from the ModelSpec: a bounded RangeDim per named dim, or -- for single-input
graphs the profile lists under `enumerated` -- EnumeratedShapes at the corpus's length buckets plus
the parity sweep (what the Neural Engine can specialise for). Compute precision follows the profile
(fp16 by default, the vocoder kept fp32). Metadata records sample rate, hop, dims, voxc version and
source hashes. On Linux Core ML cannot predict: `check_package` verifies what can be checked here
(the package reloads as a spec; inputs, outputs, dtypes and ranges match the ModelSpec; an op
histogram) and parity runs on a Mac from the device bundle. numpy + coremltools at import (torch
only inside build), so the bundle can ship this file.
"""
from __future__ import annotations

import collections
import importlib.metadata
import json
import platform
import uuid
from pathlib import Path

import numpy as np

from voxc.core.errors import VoxcError, first_line
from voxc.targets.base import Backend
from voxc.core.hashing import sha256_chunks, sha256_file
from voxc.targets import coreml_runner
from voxc.targets.runner import Runner

FILE = "model.mlpackage"
DEFERRED_REASON = coreml_runner.DEFERRED_REASON
PRECISIONS = ("fp16", "fp32")
_DTYPES = {"float32": "FLOAT32", "int64": "INT32", "int32": "INT32", "float16": "FLOAT16"}
_REGISTERED = []


def _ct():
    import coremltools as ct
    return ct


def _register_int_fix() -> None:
    """coremltools 9.0 casts a folded size-1 array with int(x.val), which numpy >= 2.3 refuses
    ("only 0-dimensional arrays can be converted"); the same conversion, reading the one element."""
    if _REGISTERED:
        return
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op

    def _int(context, node):
        x = _get_inputs(context, node, expected=1)[0]
        if x.can_be_folded_to_const():
            res = mb.const(val=np.int32(np.asarray(x.val).reshape(())), name=node.name)
        else:
            if len(x.shape) > 0:
                x = mb.squeeze(x=x, name=node.name + "_item")
            res = mb.cast(x=x, dtype="int32", name=node.name)
        context.add(res, node.name)
    register_torch_op(_int, torch_alias=["int"], override=True)
    _REGISTERED.append(True)


def enumerated_sizes(spec, options: dict) -> list[dict[str, int]]:
    """Sizes of every dynamic dim for each enumerated shape: the parity sweep plus corpus bucket opts."""
    from voxc.targets.lengths import buckets, corpus_lengths
    d = spec.dims[spec.sweep_dim]
    lengths = {n for _, n in spec.sweep()}
    lengths |= {opt for _, opt, _ in buckets(d, corpus_lengths(options, spec.sweep_dim), int(options.get("buckets", 4)))}
    points = {(1, n) for n in lengths} | set(spec.sweep())
    return [{"batch": b, spec.sweep_dim: n} for b, n in sorted(points)]


def _input_types(spec, options: dict) -> tuple[list, str]:
    ct = _ct()
    dynamic = [t for t in spec.inputs if any(isinstance(d, str) for d in t.dims)]
    if spec.name in options.get("enumerated", []):
        if len(dynamic) != 1 or spec.dynamic_dims() - {"batch", spec.sweep_dim}:
            raise VoxcError(f"{spec.name}: enumerated shapes need a single input whose only dynamic dims are batch "
                            f"and {spec.sweep_dim}; remove it from [options.coreml] enumerated")
        t = dynamic[0]
        shapes = [tuple(s[d] if isinstance(d, str) else d for d in t.dims) for s in enumerated_sizes(spec, options)]
        default = shapes[[s[1:] for s in shapes].index(min(s[1:] for s in shapes))] if shapes else None
        return [ct.TensorType(name=t.name, shape=ct.EnumeratedShapes(shapes=shapes, default=default),
                              dtype=_np_dtype(t.dtype))], "enumerated"
    tag = uuid.uuid4().hex[:6]  # RangeDim symbols are global to the coremltools process
    dims = {n: ct.RangeDim(lower_bound=d.min, upper_bound=d.max, default=d.export, symbol=f"{n}_{tag}")
            for n, d in spec.dims.items()}
    return [ct.TensorType(name=t.name, shape=ct.Shape(tuple(dims[d] if isinstance(d, str) else d for d in t.dims)),
                          dtype=_np_dtype(t.dtype)) for t in spec.inputs], "range"


def _np_dtype(dtype: str):
    return np.int32 if dtype.startswith("int") else np.float32


def _weights_sha256(module) -> str:
    return sha256_chunks(k.encode() + v.detach().contiguous().numpy().tobytes()
                         for k, v in sorted(module.state_dict().items()))


def _voxc_version() -> str:
    try:
        return importlib.metadata.version("voxc")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _load_spec(path: Path):
    ct = _ct()
    try:
        return ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as exc:
        raise VoxcError(f"{path} does not load as a Core ML package ({type(exc).__name__}); rebuild the target") from None


def check_package(spec, path: Path, options: dict | None = None) -> list[str]:
    """Every way the package's interface differs from the ModelSpec (empty when it conforms)."""
    s = _load_spec(path)
    problems = []
    got_in = {i.name: i.type.multiArrayType for i in s.description.input}
    got_out = {o.name: o.type.multiArrayType for o in s.description.output}
    if list(got_in) != [t.name for t in spec.inputs]:
        problems.append(f"inputs {list(got_in)} != spec {[t.name for t in spec.inputs]}")
    if list(got_out) != [t.name for t in spec.outputs]:
        problems.append(f"outputs {list(got_out)} != spec {[t.name for t in spec.outputs]}")
    from coremltools.proto import FeatureTypes_pb2 as ft
    for t in spec.inputs:
        a = got_in.get(t.name)
        if a is None:
            continue
        dtype = ft.ArrayFeatureType.ArrayDataType.Name(a.dataType)
        if dtype != _DTYPES[t.dtype]:
            problems.append(f"input {t.name} is {dtype}, spec {t.dtype} needs {_DTYPES[t.dtype]}")
        if len(a.shape) != len(t.dims):
            problems.append(f"input {t.name} has rank {len(a.shape)}, spec {len(t.dims)}")
            continue
        if a.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
            shapes = [list(e.shape) for e in a.enumeratedShapes.shapes]
            for shape in shapes:
                for axis, d in enumerate(t.dims):
                    lo, hi = (d, d) if isinstance(d, int) else (spec.dims[d].min, spec.dims[d].max)
                    if not lo <= shape[axis] <= hi:
                        problems.append(f"input {t.name} enumerated shape {shape} axis {axis} outside [{lo}, {hi}]")
            want = {tuple(p[d] if isinstance(d, str) else d for d in t.dims) for p in
                    ({"batch": b, spec.sweep_dim: n} for b, n in spec.sweep())}
            missing = want - {tuple(x) for x in shapes}
            if missing:
                problems.append(f"input {t.name} enumerated shapes miss parity sweep shapes {sorted(missing)}")
            continue
        ranges = list(a.shapeRange.sizeRanges)
        if len(ranges) != len(t.dims):
            problems.append(f"input {t.name} has no shape range for its dynamic dims")
            continue
        for axis, (d, r) in enumerate(zip(t.dims, ranges)):
            lo, hi = (d, d) if isinstance(d, int) else (spec.dims[d].min, spec.dims[d].max)
            if (r.lowerBound, r.upperBound) != (lo, hi):
                problems.append(f"input {t.name} axis {axis} range [{r.lowerBound}, {r.upperBound}] != spec "
                                f"{d if isinstance(d, str) else 'fixed'} [{lo}, {hi}]")
    meta = dict(s.description.metadata.userDefined)
    for key in ("voxc_version", "sample_rate", "hop", "dims", "source_onnx_sha256", "weights_sha256"):
        if not meta.get(key):
            problems.append(f"metadata '{key}' missing")
    return problems


def op_summary(path: Path) -> dict:
    """Op histogram of the ML Program's main function and how many ops compute in fp16."""
    s = _load_spec(path)
    ops: collections.Counter = collections.Counter()
    fp16 = 0
    main = s.mlProgram.functions["main"]
    for block in main.block_specializations.values():
        for op in block.operations:
            ops[op.type] += 1
            for out in op.outputs:
                if out.type.tensorType.dataType == 10:  # MIL FLOAT16
                    fp16 += 1
                    break
    return {"ops": dict(sorted(ops.items())), "ops_total": sum(ops.values()), "fp16_ops": fp16,
            "spec_version": int(s.specificationVersion)}


class CoreML(Backend):
    name, precisions, tools, parity = "coreml", PRECISIONS, ("coremltools", "torch"), "device"
    format, roles = "mlpackage", {FILE: "package"}
    shipped = ("voxc.targets.coreml_runner",)
    speech_lengths = True             # enumerated shapes at corpus bucket lengths
    resources = {"macos": 1}
    device = "a Mac (python3 -m pip install numpy coremltools)"
    identity = ("host", "macos", "machine")
    evidence_device = ("macos", "chip")
    evidence_judged = ("compiled_sha256",)           # the compiled model (.mlmodelc) Core ML ran

    def build(self, source, out_dir, precision, spec=None, calibration=None, options=None, torch_module=None):
        """Trace the PyTorch module, convert to an ML Program, save model.mlpackage, check it as a spec."""
        import contextlib
        import io
        import warnings
        import torch
        options = options or {}
        if precision not in PRECISIONS:
            raise VoxcError(f"Core ML precision '{precision}' is not supported: use {' or '.join(PRECISIONS)}")
        if torch_module is None or spec is None:
            raise VoxcError("the Core ML backend converts from PyTorch: it needs the spec and the module")
        ct = _ct()
        _register_int_fix()
        module = torch_module()
        example = spec.example_inputs()
        args = tuple(torch.from_numpy(example[t.name]) for t in spec.inputs)
        inputs, shape_mode = _input_types(spec, options)
        target = getattr(ct.target, options.get("deployment_target", "iOS16"))
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, args, check_trace=False)
            try:
                model = ct.convert(traced, inputs=inputs, outputs=[ct.TensorType(name=o.name) for o in spec.outputs],
                                   convert_to="mlprogram", minimum_deployment_target=target,
                                   compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
                                   compute_units=getattr(ct.ComputeUnit, options.get("compute_units", "ALL")))
            except Exception as exc:
                raise VoxcError(f"Core ML conversion of {spec.name} failed: {type(exc).__name__}: "
                                f"{first_line(exc)}") from None
        from voxc.core.audio import HOP, SAMPLE_RATE
        meta = {"voxc_version": _voxc_version(), "model": spec.name, "precision": precision,
                "sample_rate": str(SAMPLE_RATE), "hop": str(HOP), "dims": json.dumps(spec.to_json()["dims"], sort_keys=True),
                "shape_mode": shape_mode, "source_onnx_sha256": sha256_file(source) if source else "",
                "weights_sha256": _weights_sha256(module)}
        model.user_defined_metadata.update(meta)
        model.author = "voxc"
        model.short_description = spec.description
        model.version = meta["voxc_version"]
        model.save(str(out_dir / FILE))
        problems = check_package(spec, out_dir / FILE, options)
        if problems:
            raise VoxcError(f"Core ML package for {spec.name} does not match its ModelSpec: {'; '.join(problems)}")
        summary = op_summary(out_dir / FILE)
        return self.record(precision, shape_mode=shape_mode, deployment_target=str(target).split(".")[-1],
                           metadata=meta, **summary)

    def open(self, path, record=None, threads=None) -> Runner:
        io = (record or {}).get("io", {})
        return coreml_runner.CoreMLRunner(Path(path), io.get("inputs"), io.get("outputs"))

    def unavailable(self):
        return None if platform.system() == "Darwin" else f"{DEFERRED_REASON} (Core ML predictions need macOS)"

    def fingerprint(self):
        return coreml_runner.CoreMLRunner.fingerprint()

    def host_checks(self, spec, art_dir, record, precision, options, check):
        problems = check_package(spec, art_dir / record["file"], options)
        base = {"model": spec.name, "precision": precision, "runtime": self.name, "length": 0, "batch": 0}
        row = {**base, "output": "*", "metric": "package_matches_spec", "value": float(len(problems)),
               "tolerance": 0.0, "passed": not problems, **({"error": "; ".join(problems)[:400]} if problems else {})}
        return [row], DEFERRED_REASON

    def bundle_entry(self, name, art_path, record, precision, source, put, put_tree):
        return {"package": put_tree(art_path, f"models/{name}/{art_path.name}"),
                "stand_in": {"onnx": source, "precision": "fp32"}, "shape_mode": record.get("shape_mode"),
                "ops_total": record.get("ops_total")}
