"""OpenVINO backend: IR (model.xml + model.bin) converted from the checked ONNX graph; CPU plugin runner.

fp32: openvino.convert_model + save_model (no compression).
fp16: the same IR with FP16-compressed weights (halves the file; the CPU plugin still computes in
      FP32 on hosts without native FP16, so it is rarely faster -- the precision policy decides).
int8: NNCF post-training quantization on real calibration feeds (preset MIXED by default: symmetric
      weights, asymmetric activations, the best OpenVINO INT8 measured here). When the plain result
      misses voxc's own int8 gates on held-out calibration items (`validation` in the options, judged
      against the PyTorch FP32 module with targets/sensitivity.score, the same score the ONNX Runtime
      sensitivity pass uses), nncf.quantize_with_accuracy_control is run with that score and keeps
      the most damaging layers in float.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from voxc.core.errors import VoxcError
from voxc.targets import int8_search
from voxc.targets.base import Backend
from voxc.targets.openvino_runner import OvRunner, core
from voxc.targets.runner import Runner

FILE = "model.xml"
PRECISIONS = ("fp32", "fp16", "int8")
# model_type "transformer" makes NNCF leave attention's softmax / activation matmuls and layer norms
# in float, as the ONNX Runtime builder does (targets/onnxruntime.py). ignore_types (OpenVINO op types
# kept float), fast_bias_correction, smooth_quant (SmoothQuant's matmul alpha) and overflow_fix are
# NNCF's own settings, passed only when set.
INT8_DEFAULTS = {"preset": "mixed", "accuracy_control": False, "sensitivity_target": 0.8, "subset_size": 300,
                 "keep_fp32": [], "max_reverted_layers": 5, "model_type": "", "ignore_types": [],
                 "fast_bias_correction": None, "smooth_quant": None, "overflow_fix": ""}


def _convert(source: Path):
    import openvino as ov
    return ov.convert_model(str(source))


_AUTO_NAME = re.compile(r"\b([A-Za-z][A-Za-z0-9]*)_(\d+)\b")


def deterministic_names(xml: str) -> str:
    """OpenVINO names the nodes it creates from a process-wide counter (Transpose_280846), so the same
    model saved twice differs. Renumber those names by first appearance: identical models give
    identical IR files, and the stages keyed on them stay cached across fresh builds."""
    mapping: dict[str, str] = {}

    def rename(m: re.Match) -> str:
        return mapping.setdefault(m.group(0), f"{m.group(1)}_{len(mapping)}")
    return _AUTO_NAME.sub(rename, xml)


def _save(model, out_dir: Path, compress: bool) -> None:
    import openvino as ov
    ov.save_model(model, str(Path(out_dir) / FILE), compress_to_fp16=compress)
    xml = Path(out_dir) / FILE
    xml.write_text(deterministic_names(xml.read_text()))


def _ignored_scope(source: Path, prefixes, types=(), nodes=()):
    """NNCF ignored scope for the nodes that read parameters with the given name prefixes, the ONNX
    nodes named, and the OpenVINO op types listed; and the ONNX nodes kept float."""
    import nncf
    import onnx
    from voxc.targets.onnx_nodes import nodes_using
    names = nodes_using(onnx.load(str(source)), prefixes)
    names += [n for n in nodes if n not in names]
    # OpenVINO's ONNX frontend splits a Conv / Gemm with a bias into the op, named '<node>/WithoutBiases',
    # plus an Add named '<node>': the bare name alone left every biased layer (a vocoder's conv_pre,
    # its `out.` phase head) quantised while the build reported it kept float.
    scope = sorted({n for name in names for n in (name, f"{name}/WithoutBiases")})
    if not names and not types:
        return None, names
    return nncf.IgnoredScope(names=scope, **({"types": list(types)} if types else {}), validate=False), names


def _advanced(s: dict):
    """NNCF's advanced parameters for the settings that need them (None: NNCF's defaults)."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    adv = {}
    if s["smooth_quant"] is not None:
        adv["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(matmul=float(s["smooth_quant"]), convolution=-1)
    if s["overflow_fix"]:
        from nncf.quantization.advanced_parameters import OverflowFix
        adv["overflow_fix"] = OverflowFix(s["overflow_fix"])
    return AdvancedQuantizationParameters(**adv) if adv else None


def _gate_score_fn(spec, module, validation):
    """voxc's own int8 gates as NNCF's validation function: 1 minus the worst gate excess
    (targets/sensitivity.score: 1.0 = at a budget) of the outputs against PyTorch FP32 on the
    validation items, so higher is better and FP32 scores ~1 (NNCF divides by it). NNCF may pass any subset of the items
    in any order, so references are looked up by the item's content."""
    import hashlib
    from voxc.targets import sensitivity
    from voxc.targets.runner import TorchRunner
    ref = TorchRunner(module, spec)
    names = [t.name for t in spec.inputs]
    budgets = sensitivity.int8_budgets(spec)
    key = lambda f: hashlib.sha1(b"".join(np.ascontiguousarray(f[k]).tobytes() for k in names)).hexdigest()
    wanted = {key(f): ref.infer(f) for f in validation}

    def score(compiled, data) -> float:
        refs, outs = [], []
        for f in data:
            got = compiled({k: f[k] for k in names})
            by_name = {o.get_any_name(): np.asarray(v) for o, v in got.items()}
            refs.append(wanted[key(f)])
            outs.append({t.name: by_name[t.name] for t in spec.outputs})
        return 1.0 - sensitivity.score(spec, budgets, refs, outs)
    return score


LOW_BITS = ("i8", "u8", "i4", "u4", "nf4")
_PASS_THROUGH = ("Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze")


def quantised_layers(xml: str) -> dict:
    """How much of an OpenVINO IR runs quantised: `markers` counts FakeQuantize / FakeConvert layers
    and low-bit weight constants (NNCF's compressed weights); `ops` counts, per layer type, the layers
    fed by one (through the Convert / Subtract / Multiply that dequantise a weight); `nodes` their total."""
    import xml.etree.ElementTree as ET
    from collections import Counter
    root = ET.fromstring(xml)
    layers = {lay.get("id"): lay for lay in root.iter("layer")}
    inputs: dict[str, list[str]] = {}
    for e in root.iter("edge"):
        inputs.setdefault(e.get("to-layer"), []).append(e.get("from-layer"))

    def marker(lay) -> bool:
        data = lay.find("data")
        return lay.get("type") in ("FakeQuantize", "FakeConvert") or (
            lay.get("type") == "Constant" and data is not None and data.get("element_type") in LOW_BITS)

    def fed(lid: str, depth: int = 0) -> bool:
        for src in inputs.get(lid, []):
            lay = layers[src]
            if marker(lay) or (depth < 4 and lay.get("type") in _PASS_THROUGH and fed(src, depth + 1)):
                return True
        return False
    markers = sum(marker(lay) for lay in layers.values())
    ops = Counter(lay.get("type") for lid, lay in layers.items()
                  if not marker(lay) and lay.get("type") not in _PASS_THROUGH + ("Result",) and fed(lid))
    return {"markers": markers, "nodes": sum(ops.values()), "ops": dict(sorted(ops.items()))}


_PRESETS = {"mixed": lambda: __import__("nncf").QuantizationPreset.MIXED,
            "performance": lambda: __import__("nncf").QuantizationPreset.PERFORMANCE}


def _mixed_search(source: Path, s: dict, kw: dict, dataset, calibration, validation, spec, torch_module,
                  plan: dict) -> dict:
    """targets/int8_search.py's one-shot ranking (on the PyTorch module) and mixed-precision search for NNCF:
    each trial is one nncf.quantize with the top-k ranked layers also ignored, scored by voxc's int8 gates
    on the validation items. Bounded: len(methods) + len(steps) trials, whatever the layer count."""
    import time
    import nncf
    import onnx
    from voxc.targets.onnx_nodes import nodes_using
    bad = [m for m in plan["methods"] if m not in _PRESETS]
    if bad:
        raise VoxcError(f"openvino int8 search methods {bad} unknown: they are NNCF presets (mixed, performance)")
    t0 = time.perf_counter()
    module = torch_module()
    names = [t.name for t in spec.inputs]
    ranked = int8_search.rank_layers(module, calibration[: plan["ranking_items"]], names, 8, plan["probes"], plan["seed"])
    graph = onnx.load(str(source))
    declared = set(nodes_using(graph, s["keep_fp32"]))
    ranking = [(name, [n for n in nodes_using(graph, [name + "."]) if n not in declared], score)
               for name, score in ranked]
    ranking = [r for r in ranking if r[1]]
    ranked_s = round(time.perf_counter() - t0, 1)
    score = _gate_score_fn(spec, module, validation)

    def evaluate(method: str, extra: list[str]) -> float:
        scope, _ = _ignored_scope(source, s["keep_fp32"], s["ignore_types"], extra)
        trial = nncf.quantize(_convert(source), dataset, **{**kw, "preset": _PRESETS[method](),
                                                              **({"ignored_scope": scope} if scope is not None else {})})
        return round(1.0 - score(core().compile_model(trial, "CPU"), validation), 4)
    record = int8_search.mixed_precision(ranking, evaluate, plan)
    _, kept = _ignored_scope(source, s["keep_fp32"], s["ignore_types"], record["kept_fp32"])
    return {**record, "fp32_nodes": kept, "ranking_seconds": ranked_s, "seconds": round(time.perf_counter() - t0, 1)}


class OpenVino(Backend):
    name, precisions, tools = "openvino", PRECISIONS, ("openvino", "nncf")
    format, roles = "openvino-ir", {FILE: "model", "model.bin": "weights"}

    def build(self, source, out_dir, precision, spec=None, calibration=None, options=None, torch_module=None):
        options = options or {}
        if precision not in PRECISIONS:
            raise VoxcError(f"openvino precision '{precision}' unknown: choose {', '.join(PRECISIONS)}")
        record = self.record(precision)
        if precision == "int8":
            record.update(self.quantize(Path(source), Path(out_dir), spec, calibration, options, torch_module))
        else:
            _save(_convert(Path(source)), Path(out_dir), compress=(precision == "fp16"))
        return record

    def quantize(self, source: Path, out_dir: Path, spec, calibration, options: dict | None = None,
                 torch_module=None) -> dict:
        """NNCF post-training int8 of `source` into out_dir/model.xml with the settings in `options`
        (INT8_DEFAULTS under them; keep_fp32 = parameter-name prefixes of layers kept float). With
        accuracy_control, held-out `validation` items and the PyTorch module, layers that break voxc's
        int8 gates are reverted to float. Returns what the build records about it."""
        import nncf
        options = options or {}
        if not calibration:
            raise VoxcError("int8 needs real calibration data (calibration/feeds.py); refusing to calibrate on nothing")
        s = {**INT8_DEFAULTS, **{k: v for k, v in options.items() if k in INT8_DEFAULTS}}
        if s["preset"] not in _PRESETS:
            raise VoxcError(f"openvino int8 preset '{s['preset']}' unknown: choose mixed or performance")
        preset = _PRESETS[s["preset"]]()
        names = [t.name for t in spec.inputs] if spec is not None else list(calibration[0])
        dataset = nncf.Dataset([{k: f[k] for k in names} for f in calibration])
        scope, kept = _ignored_scope(source, s["keep_fp32"], s["ignore_types"])
        model = _convert(source)
        kw = {"preset": preset, "subset_size": min(s["subset_size"], len(calibration))}
        if scope is not None:
            kw["ignored_scope"] = scope
        if s["model_type"]:
            if s["model_type"] != "transformer":
                raise VoxcError(f"openvino int8 model_type '{s['model_type']}' unknown: use transformer or leave it empty")
            kw["model_type"] = nncf.ModelType.TRANSFORMER
        if s["fast_bias_correction"] is not None:
            kw["fast_bias_correction"] = bool(s["fast_bias_correction"])
        advanced = _advanced(s)
        if advanced is not None:
            kw["advanced_parameters"] = advanced
        validation = options.get("validation") or []
        plan = int8_search.search_settings(options, methods=[s["preset"]])
        if plan is not None and validation and torch_module is not None and spec is not None:
            search = _mixed_search(source, s, kw, dataset, calibration, validation, spec, torch_module, plan)
            s["preset"], kept = search["method"], search.pop("fp32_nodes")
            scope, _ = _ignored_scope(source, s["keep_fp32"], s["ignore_types"], search["kept_fp32"])
            kw = {**kw, "preset": _PRESETS[s["preset"]](), **({"ignored_scope": scope} if scope is not None else {})}
        quantized = nncf.quantize(model, dataset, **kw)
        record = {"int8": {"preset": s["preset"], "method": "nncf.quantize", "model_type": s["model_type"] or "default"},
                  "calibration_items": len(calibration), "fp32_nodes": kept}
        if plan is not None and validation and torch_module is not None and spec is not None:
            record["int8_search"] = search
        elif s["accuracy_control"] and validation and torch_module is not None and spec is not None:
            score = _gate_score_fn(spec, torch_module(), validation)
            plain = score(core().compile_model(quantized, "CPU"), validation)
            record["int8"]["plain_score"] = round(1.0 - plain, 4)     # recorded as the worst excess
            if 1.0 - plain > s["sensitivity_target"]:
                from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters
                vdata = nncf.Dataset([{k: f[k] for k in names} for f in validation])
                restorer = AdvancedAccuracyRestorerParameters(max_num_iterations=int(s["max_reverted_layers"]),
                                                              ranking_subset_size=len(validation))
                quantized = nncf.quantize_with_accuracy_control(
                    _convert(source), dataset, vdata, validation_fn=lambda m, data: score(m, list(data)),
                    max_drop=s["sensitivity_target"], drop_type=nncf.DropType.ABSOLUTE,
                    advanced_accuracy_restorer_parameters=restorer, **kw)
                record["int8"]["method"] = "nncf.quantize_with_accuracy_control"
                record["int8"]["controlled_score"] = round(1.0 - score(core().compile_model(quantized, "CPU"), validation), 4)
        _save(quantized, out_dir, compress=False)
        return record

    def open(self, path, record=None, threads=None) -> Runner:
        return OvRunner(Path(path), threads)

    def quantised(self, out_dir, record):
        return quantised_layers((Path(out_dir) / record["file"]).read_text())

    def fingerprint(self):
        return OvRunner.fingerprint()
