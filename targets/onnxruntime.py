"""ONNX Runtime backend: builds fp32, fp16 and int8 (static QDQ) graphs; runs them on the CPU provider.

fp32: ORT's extended graph optimisations applied offline.
fp16: onnxruntime.transformers.float16 with float32 inputs/outputs; ops or layers named in the
      options (fp16_keep_ops, keep_fp32 = parameter-name prefixes) stay float32 islands.
int8: quantize_static, QDQ format, per-channel weights, calibrated on real data (`calibration`:
      a list of feed dicts from calibration/feeds.py -- never random); calibration method and
      activation/weight types come from the options; layers named in keep_fp32 stay float, and
      the sensitivity pass (targets/sensitivity.py) keeps further layers float when the
      quantised graph misses the int8 gates on held-out validation items.
The TensorRT bundles (issue 5) call build() for their FP16 and INT8-QDQ ONNX files.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from voxc.core.errors import VoxcError
from voxc.targets.base import Backend
from voxc.targets.ort_runner import OrtRunner, fingerprint, runner, session_options  # noqa: F401 (the backend API)

FILE = "model.onnx"
TOOLS = ("onnxruntime", "onnx")
PRECISIONS = ("fp32", "fp16", "int8")

# Defaults chosen from measurements on this CPU class (2-core AVX2, no VNNI): U8S8 with reduce_range was
# both faster and more accurate than S8S8 on AVX2 without VNNI; minmax as good as entropy.
# Only layers with weights are quantised (op_types): quantising residual adds, softmax and layer
# norms adds error and saves nothing on a CPU. MatMuls of two activations (attention scores) stay
# float unless activation_matmuls: on the trained decoder they took MCD from 0.95 to 1.5 dB at 640
# frames and made it slower. The sensitivity pass (targets/sensitivity.py) may keep up to
# sensitivity_layers more layers float, until the validation score is <= sensitivity_target.
# weight_axes sets the per-channel weight axis per op type where ORT's default is not the one wanted
# (e.g. {"ConvTranspose": 0}); extra_options go to quantize_static as they are (ORT's own names, e.g.
# ActivationSymmetric). The TensorRT backend sets its INT8 rules through both (targets/tensorrt.py).
INT8_DEFAULTS = {"calibrate_method": "minmax", "activation_type": "uint8", "weight_type": "int8",
                 "reduce_range": True, "per_channel": True, "keep_fp32": [],
                 "op_types": ["Conv", "MatMul", "Gemm"], "activation_matmuls": False,
                 "sensitivity_layers": 4, "sensitivity_target": 0.8, "weight_axes": {}, "extra_options": {}}
_QTYPES = {"uint8": "QUInt8", "int8": "QInt8", "uint16": "QUInt16", "int16": "QInt16"}
_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def _optimize_offline(source: Path, dest: Path) -> None:
    so = session_options(threads=1)
    # EXTENDED, not ALL: layout transforms at ALL are host-specific and must not be baked offline.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dest)
    ort.InferenceSession(str(source), so, providers=["CPUExecutionProvider"])


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    for k, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{k}"
    return model


def _fp16(source: Path, dest: Path, options: dict) -> dict:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from voxc.targets.onnx_nodes import nodes_using
    model = _named(onnx.load(str(source)))
    keep_ops = list(options.get("fp16_keep_ops", []))
    keep_nodes = nodes_using(model, options.get("keep_fp32", []))
    model16 = convert_float_to_float16(model, keep_io_types=True, op_block_list=keep_ops or None,
                                       node_block_list=keep_nodes or None)
    onnx.save(model16, str(dest))
    return {"fp32_ops": keep_ops, "fp32_nodes": keep_nodes}


class _Reader:
    """CalibrationDataReader over a list of feed dicts (with __len__ and set_range, which ORT's
    strided calibration needs on varying-length inputs)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], names: set[str]):
        self.feeds = [{k: v for k, v in f.items() if k in names} for f in feeds]
        self.start, self.end, self.pos = 0, len(self.feeds), 0

    def __len__(self):
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int):
        self.start, self.end = start_index, min(end_index, len(self.feeds))
        self.pos = self.start

    def get_next(self):
        if self.pos >= self.end:
            return None
        self.pos += 1
        return self.feeds[self.pos - 1]

    def rewind(self):
        self.pos = self.start


def int8_settings(options: dict | None) -> dict:
    s = {**INT8_DEFAULTS, **{k: v for k, v in (options or {}).items() if k in INT8_DEFAULTS}}
    if s["calibrate_method"] not in _METHODS:
        raise VoxcError(f"int8 calibrate_method '{s['calibrate_method']}' unknown: choose {', '.join(_METHODS)}")
    for k in ("activation_type", "weight_type"):
        if s[k] not in _QTYPES:
            raise VoxcError(f"int8 {k} '{s[k]}' unknown: choose {', '.join(_QTYPES)}")
    return s


def weighted_nodes(model: onnx.ModelProto, op_types) -> list[str]:
    """Nodes of the given op types that read a weight (an initializer): the layers int8 speeds up."""
    params = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in op_types and any(i in params for i in n.input)]


def activation_matmuls(model: onnx.ModelProto) -> list[str]:
    """MatMul nodes with no weight input (e.g. attention's q @ k^T and weights @ v)."""
    params = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and not any(i in params for i in n.input)]


def _int8(source: Path, dest: Path, calibration, options: dict, spec=None, torch_module=None) -> dict:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    import onnx
    from voxc.targets.onnx_nodes import nodes_using
    if not calibration:
        raise VoxcError("int8 needs real calibration data (calibration/feeds.py); refusing to calibrate on nothing")
    s = int8_settings(options)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        except Exception:
            onnx.save(onnx.load(str(source)), str(pre))
        model = _named(onnx.load(str(pre)))
        onnx.save(model, str(pre))
        from voxc.targets.int8_search import resolve_op_types
        s["op_types"] = resolve_op_types(model, s["op_types"])
        names = {i.name for i in model.graph.input}
        exclude = nodes_using(model, s["keep_fp32"]) + ([] if s["activation_matmuls"] else activation_matmuls(model))
        CalibrationDataReader.register(_Reader)
        extra = {}
        if s["activation_type"] in ("uint16", "int16"):
            extra["UseQDQContribOps"] = True   # 16-bit Q/DQ are com.microsoft ops on older opsets
        extra.update(s["extra_options"])
        if s["weight_axes"]:   # ORT's Conv path ignores QDQOpTypePerChannelSupportToAxis: set the axis per weight
            params = {i.name for i in model.graph.initializer}
            axes = {n.input[1]: [{"axis": int(s["weight_axes"][n.op_type])}] for n in model.graph.node
                    if n.op_type in s["weight_axes"] and len(n.input) > 1 and n.input[1] in params}
            extra["TensorQuantOverrides"] = {**axes, **extra.get("TensorQuantOverrides", {})}

        def quantize(extra_fp32: list[str], out: Path, method: str | None = None) -> Path:
            method = method or s["calibrate_method"]
            if method not in _METHODS:
                raise VoxcError(f"int8 calibrate_method '{method}' unknown: choose {', '.join(_METHODS)}")
            # calibrate once per method; sensitivity trials reuse the ranges
            strided = {"CalibStridedMinMax": 1} if method != "minmax" else {}   # items of unequal lengths
            quantize_static(str(pre), str(out), _Reader(calibration, names), quant_format=QuantFormat.QDQ,
                            calibration_cache_path=Path(tmp) / f"ranges-{method}.json",
                            per_channel=s["per_channel"], reduce_range=s["reduce_range"],
                            activation_type=getattr(QuantType, _QTYPES[s["activation_type"]]),
                            weight_type=getattr(QuantType, _QTYPES[s["weight_type"]]),
                            calibrate_method=getattr(CalibrationMethod, _METHODS[method]),
                            nodes_to_exclude=(exclude + extra_fp32) or None,
                            op_types_to_quantize=list(s["op_types"]) or None, extra_options={**strided, **extra})
            return out

        validation = options.get("validation") or []
        search = mixed = None
        from voxc.targets import int8_search
        plan = int8_search.search_settings(options)
        if plan is not None and spec is not None and validation and torch_module is not None:
            mixed = _mixed_search(plan, model, pre, calibration, validation, names, s, exclude, quantize, spec,
                                  torch_module, Path(tmp))
            exclude += mixed["kept_fp32"]
            s["calibrate_method"] = mixed["method"]
        elif spec is not None and validation and s["sensitivity_layers"] > 0:
            from voxc.targets import sensitivity
            feeds = [{k: v for k, v in f.items() if k in names} for f in validation]
            reference = [runner(pre).infer(f) for f in feeds]
            budgets = sensitivity.int8_budgets(spec)

            def evaluate(extra_fp32: list[str]) -> float:
                r = runner(quantize(extra_fp32, Path(tmp) / "trial.onnx"))
                return sensitivity.score(spec, budgets, reference, [r.infer(f) for f in feeds])
            candidates = [n for n in weighted_nodes(model, s["op_types"]) if n not in exclude]
            search = sensitivity.keep_sensitive(candidates, evaluate, s["sensitivity_layers"], s["sensitivity_target"])
            exclude += search["kept_fp32"]
        quantize([], dest)
    record = {"int8": {k: v for k, v in s.items()}, "calibration_items": len(calibration), "fp32_nodes": exclude}
    if search is not None:
        record["sensitivity"] = search
    if mixed is not None:
        record["int8_search"] = mixed
    return record


def _mixed_search(plan, model, pre, calibration, validation, names, s, exclude, quantize, spec, torch_module,
                  tmp: Path) -> dict:
    """targets/int8_search.py's one-shot ranking and mixed-precision search, scored on the validation items."""
    import time
    from voxc.targets import int8_search, sensitivity
    from voxc.targets.onnx_nodes import nodes_using
    t0 = time.perf_counter()
    feeds = [{k: v for k, v in f.items() if k in names} for f in validation]
    reference = [runner(pre).infer(f) for f in feeds]
    budgets = sensitivity.int8_budgets(spec)
    inputs = [t.name for t in spec.inputs]
    bits = 7 if s["reduce_range"] else 8
    ranked = int8_search.rank_layers(torch_module(), calibration[: plan["ranking_items"]], inputs, bits,
                                     plan["probes"], plan["seed"])
    quantised = set(weighted_nodes(model, s["op_types"])) - set(exclude)
    ranking = [(name, [n for n in nodes_using(model, [name + "."]) if n in quantised], score) for name, score in ranked]
    ranking = [r for r in ranking if r[1]]
    ranked_s = round(time.perf_counter() - t0, 1)

    def evaluate(method: str, extra_fp32: list[str]) -> float:
        r = runner(quantize(extra_fp32, tmp / "trial.onnx", method))
        return sensitivity.score(spec, budgets, reference, [r.infer(f) for f in feeds])
    record = int8_search.mixed_precision(ranking, evaluate, plan)
    return {**record, "ranking_seconds": ranked_s, "seconds": round(time.perf_counter() - t0, 1)}


def build(source: Path, out_dir: Path, precision: str, spec=None, calibration=None, options=None,
          torch_module=None) -> dict:
    """Build one precision of the graph into out_dir/model.onnx; returns the artifact record."""
    options = options or {}
    if precision not in PRECISIONS:
        raise VoxcError(f"onnxruntime precision '{precision}' unknown: choose {', '.join(PRECISIONS)}")
    out_dir = Path(out_dir)
    record = {"file": FILE, "files": [FILE], "format": "onnx", "precision": precision, "runtime": "onnxruntime"}
    if precision == "fp32":
        _optimize_offline(source, out_dir / FILE)
    elif precision == "fp16":
        record.update(_fp16(source, out_dir / FILE, options))
    else:
        record.update(_int8(source, out_dir / FILE, calibration, options, spec, torch_module))
    return record


class OnnxRuntime(Backend):
    name, precisions, tools = "onnxruntime", PRECISIONS, TOOLS

    def build(self, source, out_dir, precision, spec=None, calibration=None, options=None, torch_module=None):
        return build(source, out_dir, precision, spec, calibration, options, torch_module)

    def open(self, path, record=None, threads=None):
        return OrtRunner(Path(path), threads)

    def fingerprint(self):
        return fingerprint()
