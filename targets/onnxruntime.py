"""ONNX Runtime backend: builds fp32, fp16 and int8 (static QDQ) graphs; runs them on the CPU provider.

fp32: ORT's extended graph optimisations applied offline.
fp16: onnxruntime.transformers.float16 with float32 inputs/outputs; ops or layers named in the
      options (fp16_keep_ops, keep_fp32 = parameter-name prefixes) stay float32 islands.
int8: quantize_static, QDQ format, per-channel weights, calibrated on real data (`calibration`:
      a list of feed dicts from calibration/feeds.py -- never random); calibration method and
      activation/weight types come from the options; layers named in keep_fp32 stay float, and
      the sensitivity pass (targets/sensitivity.py) keeps further layers float when the
      quantised graph misses the int8 gates on held-out validation items.
      calibrate_method "dynamic" instead rewrites the 1-D convolutions as int8 matmuls with float
      outputs and per-call input ranges (targets/int8_matmul.py): what keeps a trained HiFi-GAN's voice.
int8 is public beside build: quantize() (one int8 graph with given settings) and rank_layers() (every
weighted layer tried alone in float, scored by the int8 gates), which the INT8 study calls too.
The TensorRT backend calls build() for its FP16 and INT8-QDQ ONNX files.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from voxc.core import providers as eps
from voxc.core.errors import VoxcError
from voxc.targets.base import Backend
from voxc.targets.ort_runner import OrtRunner, session_options
from voxc.targets.runner import Runner

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
_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile", "dynamic": None}


def _optimize_offline(source: Path, dest: Path, providers: list[str]) -> None:
    so = session_options(threads=1)
    # EXTENDED, not ALL: layout transforms at ALL are host-specific and must not be baked offline.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dest)
    eps.session(Path(source), so, providers)


def _named(model):
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


def weighted_nodes(model, op_types) -> list[str]:
    """Nodes of the given op types that read a weight (an initializer): the layers int8 speeds up."""
    params = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in op_types and any(i in params for i in n.input)]


def activation_matmuls(model) -> list[str]:
    """MatMul nodes with no weight input (e.g. attention's q @ k^T and weights @ v)."""
    params = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and not any(i in params for i in n.input)]


class _Int8Graph:
    """One graph prepared for static QDQ int8 with one set of settings: pre-processed, every node named,
    the float islands (keep_fp32, activation MatMuls) excluded, calibrated once (the ranges are cached
    in `tmp`, so every trial with more layers in float reuses them)."""

    def __init__(self, source: Path, tmp: Path, calibration, options: dict | None):
        import onnx
        from onnxruntime.quantization import CalibrationDataReader
        from onnxruntime.quantization.shape_inference import quant_pre_process
        from voxc.targets.onnx_nodes import nodes_using
        if not calibration:
            raise VoxcError("int8 needs real calibration data (calibration/feeds.py); refusing to calibrate on nothing")
        self.s = s = int8_settings(options)
        self.calibration, self.tmp = calibration, Path(tmp)
        self.pre = pre = self.tmp / "pre.onnx"
        try:
            quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        except Exception:
            onnx.save(onnx.load(str(source)), str(pre))
        self.model = model = _named(onnx.load(str(pre)))
        onnx.save(model, str(pre))
        from voxc.targets.int8_search import resolve_op_types
        s["op_types"] = resolve_op_types(model, s["op_types"])       # "auto": the weighted layer types it holds
        self.names = {i.name for i in model.graph.input}
        self.exclude = nodes_using(model, s["keep_fp32"]) + ([] if s["activation_matmuls"] else activation_matmuls(model))
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
        self.extra = extra

    def candidates(self) -> list[str]:
        """The weighted layers this graph quantises (what may be kept in float)."""
        return [n for n in weighted_nodes(self.model, self.s["op_types"]) if n not in self.exclude]

    def quantize(self, extra_fp32: list[str], out: Path, method: str | None = None) -> Path:
        """The graph quantised with these layers also in float, calibrated by `method` (default: the
        settings'); each method calibrates once, and later trials reuse its ranges."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        s = self.s
        method = method or s["calibrate_method"]
        if method not in _METHODS:
            raise VoxcError(f"int8 calibrate_method '{method}' unknown: choose {', '.join(_METHODS)}")
        if method == "dynamic":
            return self._int8_matmuls(extra_fp32, out)
        strided = {"CalibStridedMinMax": 1} if method != "minmax" else {}   # histogram methods: items of unequal lengths
        quantize_static(str(self.pre), str(out), _Reader(self.calibration, self.names), quant_format=QuantFormat.QDQ,
                        calibration_cache_path=self.tmp / f"ranges-{method}.json",
                        per_channel=s["per_channel"], reduce_range=s["reduce_range"],
                        activation_type=getattr(QuantType, _QTYPES[s["activation_type"]]),
                        weight_type=getattr(QuantType, _QTYPES[s["weight_type"]]),
                        calibrate_method=getattr(CalibrationMethod, _METHODS[method]),
                        nodes_to_exclude=(self.exclude + extra_fp32) or None,
                        op_types_to_quantize=list(s["op_types"]) or None, extra_options={**strided, **self.extra})
        return out

    def _int8_matmuls(self, extra_fp32: list[str], out: Path) -> Path:
        """The "dynamic" form: every 1-D convolution and transposed convolution of the quantised op types, not
        kept float, as an int8 matmul with a float output (targets/int8_matmul.py); other layers stay float."""
        import onnx
        from voxc.targets import int8_matmul
        if "Conv" not in self.s["op_types"]:
            raise VoxcError(f"int8 calibrate_method 'dynamic' quantises 1-D convolutions only, and op_types "
                            f"{self.s['op_types']} holds no Conv: use minmax, entropy or percentile")
        skip = set(self.exclude) | set(extra_fp32)
        kinds = {n.name: n.op_type for n in self.model.graph.node}
        nodes = [n for n in int8_matmul.rewritable(self.model) if n not in skip and kinds[n] in self.s["op_types"]]
        onnx.save(int8_matmul.rewrite(self.model, nodes), str(out))
        return out

    def evaluator(self, spec, validation: list[dict]):
        """evaluate(extra float layers) -> the int8 gate score (targets/sensitivity.score) of that
        quantised graph against the float graph on the validation items."""
        from voxc.targets import sensitivity
        feeds = [{k: v for k, v in f.items() if k in self.names} for f in validation]
        reference = [OrtRunner(self.pre).infer(f) for f in feeds]
        budgets = sensitivity.int8_budgets(spec)

        def evaluate(extra_fp32: list[str], method: str | None = None) -> float:
            r = OrtRunner(self.quantize(extra_fp32, self.tmp / "trial.onnx", method))
            return sensitivity.score(spec, budgets, reference, [r.infer(f) for f in feeds])
        return evaluate

    def mixed_search(self, plan: dict, spec, validation: list[dict], torch_module) -> dict:
        """targets/int8_search.py's one-shot ranking (on the PyTorch module) and the mixed-precision search
        over it, each trial scored on the validation items."""
        import time
        from voxc.targets import int8_search
        from voxc.targets.onnx_nodes import nodes_using
        t0 = time.perf_counter()
        s = self.s
        inputs = [t.name for t in spec.inputs]
        ranked = int8_search.rank_layers(torch_module(), self.calibration[: plan["ranking_items"]], inputs,
                                         7 if s["reduce_range"] else 8, plan["probes"], plan["seed"])
        quantised = set(self.candidates())
        ranking = [(name, [n for n in nodes_using(self.model, [name + "."]) if n in quantised], score)
                   for name, score in ranked]
        ranking = [r for r in ranking if r[1]]
        ranked_s = round(time.perf_counter() - t0, 1)
        evaluate = self.evaluator(spec, validation)
        record = int8_search.mixed_precision(ranking, lambda method, extra: evaluate(extra, method), plan)
        return {**record, "ranking_seconds": ranked_s, "seconds": round(time.perf_counter() - t0, 1)}


class OnnxRuntime(Backend):
    name, precisions, tools = "onnxruntime", PRECISIONS, ("onnxruntime", "onnx")
    format, roles = "onnx", {"model.onnx": "model"}

    def build(self, source, out_dir, precision, spec=None, calibration=None, options=None, torch_module=None):
        """Build one precision of the graph into out_dir/model.onnx; returns the artifact record (with
        the execution providers its sessions use: the profile's `providers`, else the CPU's)."""
        options = options or {}
        if precision not in PRECISIONS:
            raise VoxcError(f"onnxruntime precision '{precision}' unknown: choose {', '.join(PRECISIONS)}")
        providers = eps.check(eps.parse(options.get("providers")) or list(eps.DEFAULT))
        out_dir = Path(out_dir)
        record = self.record(precision, providers=providers)
        if precision == "fp32":
            _optimize_offline(source, out_dir / self.file, providers)
        elif precision == "fp16":
            record.update(_fp16(source, out_dir / self.file, options))
        else:
            record.update(self.quantize(source, out_dir, spec, calibration, options, torch_module))
        return record

    def quantize(self, source: Path, out_dir: Path, spec, calibration, options: dict | None = None,
                 torch_module=None) -> dict:
        """Static QDQ int8 of `source` into out_dir/model.onnx with the settings in `options` (INT8_DEFAULTS
        under them; keep_fp32 = parameter-name prefixes of layers kept float); with a spec and held-out
        `validation` items in the options, the sensitivity pass keeps up to sensitivity_layers more layers
        float. Returns what the build records about it."""
        from voxc.targets import int8_search
        options = options or {}
        with tempfile.TemporaryDirectory() as tmp:
            graph = _Int8Graph(Path(source), Path(tmp), calibration, options)
            s, exclude = graph.s, list(graph.exclude)
            validation = options.get("validation") or []
            search = mixed = None
            plan = int8_search.search_settings(options)
            if plan is not None and spec is not None and validation and torch_module is not None:
                mixed = graph.mixed_search(plan, spec, validation, torch_module)
                exclude += mixed["kept_fp32"]
                graph.exclude = exclude
                s["calibrate_method"] = mixed["method"]
            elif spec is not None and validation and s["sensitivity_layers"] > 0:
                from voxc.targets import sensitivity
                search = sensitivity.keep_sensitive(graph.candidates(), graph.evaluator(spec, validation),
                                                    s["sensitivity_layers"], s["sensitivity_target"])
                exclude += search["kept_fp32"]
                graph.exclude = exclude
            graph.quantize([], Path(out_dir) / self.file)
        record = {"int8": {k: v for k, v in s.items()}, "calibration_items": len(calibration), "fp32_nodes": exclude,
                  "scheme": ("int8 matmuls with float outputs, per-call input ranges" if s["calibrate_method"] == "dynamic"
                             else "static QDQ")}
        if search is not None:
            record["sensitivity"] = search
        if mixed is not None:
            record["int8_search"] = mixed
        return record

    def rank_layers(self, source: Path, spec, calibration, validation, options: dict | None = None) -> dict:
        """Every weighted layer int8 quantises, tried alone in float (ranges calibrated once) and scored by
        the model's int8 gate score on the validation items: {"score_all_int8", "trials", "ranked" (most
        helpful first), "weights" (layer -> the weight it reads: what keep_fp32 prefixes match on every
        runtime), "ops" (layer -> op type), "in_source" (layer -> its weight keeps its name in `source`)}."""
        import onnx
        from voxc.targets import sensitivity
        with tempfile.TemporaryDirectory() as tmp:
            graph = _Int8Graph(Path(source), Path(tmp), calibration, {**(options or {}), "sensitivity_layers": 0})
            ranking = sensitivity.rank(graph.candidates(), graph.evaluator(spec, validation))
            params = {i.name for i in graph.model.graph.initializer}
            by_name = {n.name: n for n in graph.model.graph.node}
        ranked = ranking["ranked"]
        weights = {c: next((i for i in by_name[c].input[1:] if i in params), None) for c in ranked}
        source_params = {i.name for i in onnx.load(str(source)).graph.initializer}
        return {**ranking, "weights": weights, "ops": {c: by_name[c].op_type for c in ranked},
                "in_source": {c: weights[c] in source_params for c in ranked}}

    def open(self, path, record=None, threads=None) -> Runner:
        return OrtRunner(Path(path), threads, (record or {}).get("providers"))

    def open_graph(self, model: bytes, threads: int = 1) -> Runner:
        """A runner over a graph in memory, run as written (no graph optimisation): what the compiler uses
        to compare two forms of one graph."""
        return OrtRunner(model, threads, optimize=False)

    def fingerprint(self):
        return OrtRunner.fingerprint()
