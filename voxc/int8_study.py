"""`voxc bench --target T --int8-study`: search for an INT8 configuration that keeps the voice.

For each model (default: vocoder, acoustic_decoder) and host runtime (onnxruntime, openvino), a small
set of INT8 configurations is built from the target's portable fp32 ONNX (<model>/<model>.onnx) with
the family's real calibration feeds (calibration/feeds.py, as the build does: calibration-set items at
their natural length up to the opt shape; the last VALIDATION_ITEMS held out for ranking), then each is

  timed     against the target's fp32 artifact of the same runtime: compiler.policy.time_interleaved
            (fp32 and every configuration in the same paired rounds, 1 thread, the same parity feeds
            at the opt shape) and policy.speedup (ratio = median of the per-round ratios, low = the
            worst round: the bound the build's policy decides on);
  judged    on held-out parity utterances (natural length, up to EVAL_MAX_FRAMES) by the worst item's
            PESQ-WB and STOI (and level change) against PyTorch FP32 audio: for the vocoder the
            artifact's audio vs the PyTorch vocoder's audio on the same real mel; for the
            acoustic_decoder the artifact's mel fed through the PyTorch FP32 vocoder vs the all-FP32
            (PyTorch decoder + vocoder) audio. DNSMOS is not computed here (time); the build's gate
            still applies it.

Configurations start from the build profile's settings (targets/profiles/<T>.toml: e.g. the
vocoder's static keep_fp32 layers) and vary:
  onnxruntime  per-channel vs per-tensor weights; keep the k = 0/2/4/8 most sensitive layers float;
               U8 activations with reduce_range vs S8 symmetric; minmax vs percentile calibration;
               (vocoder) calibration on real + predicted mels (the PyTorch decoder's output).
  openvino     NNCF preset mixed vs performance; the top-k sensitive layers in the ignored scope;
               fast_bias_correction on/off; SmoothQuant (model_type transformer, matmul alpha).
Sensitivity ranking (once per model, ORT default settings, calibration ranges cached): every weighted
layer is tried alone in float and scored with targets/sensitivity.score on the validation items --
the build's own int8 gate score, so PESQ-WB/STOI for the vocoder (perceptual), log-mel L1/MCD for the
decoder (a cheap proxy on its output). The ranked layers are passed to both runtimes by the name of
the weight they read (keep_fp32 prefixes), so OpenVINO's ignored scope holds the same layers.

Every configuration is built by its backend's public quantize() (the code the build's int8 rung runs,
with the configuration's settings) and the ranking is the ONNX Runtime backend's rank_layers(); the
studied graph's output reaches audio through the family pipeline on the PyTorch FP32 references.

Quantised files are kept beside the target (artifacts/<T>.int8-study/<model>/<runtime>-<config>/) and
reused while their key (source ONNX hash, config, calibration hash) is unchanged. The table (every
config plus the fp32 artifact, Pareto front of speed ratio vs worst PESQ-WB per model and runtime,
int8 perceptual budget and the issue's goal) goes into bench.json ("int8_study") and the
"## INT8 study" section of bench.md; nothing else in either file is rewritten.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from voxc.core.atomic import write_atomic
from voxc.core.errors import VoxcError
from voxc.core.hashing import sha256_bytes, sha256_chunks, sha256_file

DEFAULT_MODELS = ("vocoder", "acoustic_decoder")
RUNTIMES = ("onnxruntime", "openvino")
GOAL = {"speed_ratio_low": 1.5, "pesq_wb": 4.0, "stoi": 0.98}   # the study's goal on a 2-core x86 CPU
MARGIN = 0.10                   # the build policy's default: low round ratio >= 1.10
VALIDATION_ITEMS = 4
CALIBRATION_ITEMS = 32
EVAL_ITEMS = 12
EVAL_MAX_FRAMES = 640
SECTION = "## INT8 study"
AUDIO = "waveform"              # the family pipeline's audio: what the studied graphs are judged by


def ort_configs(model: str) -> list[dict]:
    u8 = {"per_channel": True, "activation_type": "uint8", "reduce_range": True, "calibrate_method": "minmax"}
    out = [{"name": f"pc-u8rr-k{k}", "options": u8, "keep": k} for k in (0, 2, 4, 8)]
    out += [{"name": "pt-u8rr-k4", "options": {**u8, "per_channel": False}, "keep": 4},
            {"name": "pc-s8sym-k4", "options": {**u8, "activation_type": "int8", "reduce_range": False,
                                                "extra_options": {"ActivationSymmetric": True}}, "keep": 4},
            {"name": "pc-u8rr-pctl-k4", "options": {**u8, "calibrate_method": "percentile",
                                                    "extra_options": {"CalibStridedMinMax": 1}}, "keep": 4},
            {"name": "pc-u8rr-k1", "options": u8, "keep": 1},
            {"name": "pc-u8-k1", "options": {**u8, "reduce_range": False}, "keep": 1},
            {"name": "gemm-u8rr-k0", "options": {**u8, "op_types": ["MatMul", "Gemm"]}, "keep": 0},
            {"name": "gemm-u8rr-k2", "options": {**u8, "op_types": ["MatMul", "Gemm"]}, "keep": 2},
            # 1-D convolutions as int8 matmuls with float outputs, per-call input ranges (targets/int8_matmul.py)
            {"name": "dyn-conv-k0", "options": {**u8, "calibrate_method": "dynamic", "op_types": ["Conv"]}, "keep": 0}]
    if model == "vocoder":            # the profile keeps Vocos's phase head (`out.`) float: measure what that costs
        out.append({"name": "gemm-u8rr-k0-qhead", "options": {**u8, "op_types": ["MatMul", "Gemm"]}, "keep": 0,
                    "drop_keep": ["out."]})
    if model == "vocoder":
        out.append({"name": "pc-u8rr-k4-realpred", "options": u8, "keep": 4, "calibration": "real+predicted"})
    return [{**c, "runtime": "onnxruntime"} for c in out]


EW = ["Add", "Multiply", "Subtract", "Divide", "Select"]


def ov_configs(model: str) -> list[dict]:
    out = [{"name": "mixed-k0", "options": {"preset": "mixed"}, "keep": 0},
           {"name": "perf-k0", "options": {"preset": "performance"}, "keep": 0},
           {"name": "mixed-k4", "options": {"preset": "mixed"}, "keep": 4},
           {"name": "mixed-k4-fullbc", "options": {"preset": "mixed", "fast_bias_correction": False}, "keep": 4},
           # AVX2 without VNNI: oneDNN's u8s8 kernels sum pairs in 16 bits and can saturate; NNCF's
           # overflow fix halves the weight range (7-bit, like ORT's reduce_range) in every layer, not the first only
           {"name": "mixed-of-k0", "options": {"preset": "mixed", "overflow_fix": "enable"}, "keep": 0},
           {"name": "mixed-of-k2", "options": {"preset": "mixed", "overflow_fix": "enable"}, "keep": 2},
           # NNCF also quantises residual Adds, Multiplys, Subtracts and Selects (Vocos's magnitude clip): keep
           # element-wise ops float, as the ORT builder does (op_types = layers with weights)
           {"name": "mixed-ew-k0", "options": {"preset": "mixed", "ignore_types": EW}, "keep": 0},
           {"name": "mixed-ew-k1", "options": {"preset": "mixed", "ignore_types": EW}, "keep": 1},
           {"name": "mixed-ew-mm-k0", "options": {"preset": "mixed", "ignore_types": EW + ["Convolution", "GroupConvolution"]},
            "keep": 0},
           {"name": "mixed-mm-k0", "options": {"preset": "mixed", "ignore_types": ["Convolution", "GroupConvolution"]},
            "keep": 0}]
    if model == "acoustic_decoder":   # the profile already runs it as a transformer (SmoothQuant matmul 0.95)
        out.append({"name": "mixed-k4-nosq", "options": {"preset": "mixed", "smooth_quant": -1.0}, "keep": 4})
    else:                             # Vocos's ConvNeXt pointwise layers are MatMuls: try SmoothQuant on them
        out.append({"name": "mixed-k4-sq", "options": {"preset": "mixed", "model_type": "transformer",
                                                       "smooth_quant": 0.95}, "keep": 4})
    return [{**c, "runtime": "openvino"} for c in out]


CONFIGS = {"onnxruntime": ort_configs, "openvino": ov_configs}    # each runtime's table of settings to try


def configs_for(model: str, runtimes=RUNTIMES, names=None) -> list[dict]:
    out = [c for rt, fn in CONFIGS.items() if rt in runtimes for c in fn(model)]
    return [c for c in out if names is None or c["name"] in names or f"{c['runtime']}/{c['name']}" in names]


# ---- the Pareto front and the verdicts ------------------------------------------------------------

def pareto(rows: list[dict], x: str = "speed_ratio", y: str = "worst_pesq_wb") -> list[dict]:
    """Mark rows["pareto"]: True when no other row of the same model and runtime is at least as good
    on both x and y (higher is better) and strictly better on one. Rows lacking a value are never on
    the front."""
    for r in rows:
        ok = lambda q: isinstance(q.get(x), (int, float)) and isinstance(q.get(y), (int, float)) \
            and np.isfinite(q[x]) and np.isfinite(q[y])
        if not ok(r):
            r["pareto"] = False
            continue
        r["pareto"] = not any(ok(q) and q is not r and q["model"] == r["model"] and q["runtime"] == r["runtime"]
                              and q[x] >= r[x] and q[y] >= r[y] and (q[x] > r[x] or q[y] > r[y]) for q in rows)
    return rows


def verdicts(row: dict, budget: dict) -> dict:
    """passes_budget: the int8 perceptual budget (PESQ-WB, STOI, level; DNSMOS not computed here);
    faster: the build policy's margin in every round; goal: GOAL's speed and quality."""
    p, s, lv, low = row.get("worst_pesq_wb"), row.get("worst_stoi"), row.get("worst_level_db"), row.get("speed_low")
    num = lambda v: isinstance(v, (int, float)) and np.isfinite(v)
    passes = num(p) and num(s) and p >= budget["pesq_wb"] and s >= budget["stoi"] and \
        (not num(lv) or lv <= budget["level_db"])
    faster = num(low) and low >= 1.0 + MARGIN
    goal = bool(passes and num(low) and low >= GOAL["speed_ratio_low"] and p >= GOAL["pesq_wb"] and s >= GOAL["stoi"])
    return {"passes_budget": bool(passes), "faster": bool(faster), "would_ship": bool(passes and faster), "goal": goal}


# ---- building the configurations -----------------------------------------------------------------

def _hash_feeds(feeds: list[dict]) -> str:
    return sha256_chunks(part for f in feeds for k in sorted(f)
                         for part in (k.encode(), np.ascontiguousarray(f[k]).tobytes()))[:16]


def ranker(runtimes=RUNTIMES) -> str:
    """The runtime whose backend ranks layers for the study: the first of `runtimes` that can, else of
    RUNTIMES (the ranked layers are named by the weights they read, so every runtime can keep them)."""
    from voxc.targets import backend
    found = next((rt for rt in tuple(runtimes) + RUNTIMES if hasattr(backend(rt), "rank_layers")), None)
    if found is None:
        raise VoxcError("int8 study: no backend here ranks layers")
    return found


def rank_layers(source: Path, spec, calibration: list[dict], validation: list[dict], base_keep: list[str],
                runtime: str) -> dict:
    """Every weighted layer tried alone in float (the ranking backend's default int8 settings, ranges
    calibrated once), scored by the model's own int8 gate score on the validation items; most helpful first."""
    from voxc.targets import backend
    return backend(runtime).rank_layers(source, spec, calibration, validation, {"keep_fp32": list(base_keep)})


def build_config(cfg: dict, source: Path, spec, calibration: list[dict], keep: list[str], work: Path,
                 base: dict | None = None) -> tuple[Path, dict]:
    """Build (or reuse) one configuration's artifact (the profile's options for the model, `base`,
    under the configuration's own); returns its path and build record."""
    base = {k: v for k, v in (base or {}).items() if k in ("model_type",)}
    key = sha256_bytes(json.dumps({"cfg": cfg, "keep": keep, "base": base, "ov_scope": 2, "source": sha256_file(source),
                                   "calibration": _hash_feeds(calibration)}, sort_keys=True, default=str))[:16]
    out = work / f"{cfg['runtime']}-{cfg['name']}"
    meta = out / "study.json"
    if meta.is_file() and json.loads(meta.read_text()).get("key") == key:
        rec = json.loads(meta.read_text())["record"]
        return out / rec["file"], {**rec, "reused": True}
    out.mkdir(parents=True, exist_ok=True)
    for p in out.iterdir():
        p.unlink()
    t0 = time.perf_counter()
    from voxc.targets import backend
    be = backend(cfg["runtime"])
    built = be.quantize(source, out, spec, calibration, {**base, **cfg["options"], "keep_fp32": keep,
                                                         "sensitivity_layers": 0})
    rec = {"file": be.file, "fp32_nodes": built.get("fp32_nodes", [])}
    rec["build_s"] = round(time.perf_counter() - t0, 1)
    write_atomic(meta, json.dumps({"key": key, "record": rec}, indent=1))
    return out / rec["file"], rec


# ---- measuring -------------------------------------------------------------------------------------

def _audio_scores(ref_audio: list[np.ndarray], audio: list[np.ndarray]) -> dict:
    """Worst (and mean) PESQ-WB, STOI and level change over the items. Items whose reference PESQ finds
    no speech in (NaN: a property of the reference, the same for every config) are left out of PESQ;
    non-finite audio scores the bottom of each scale."""
    from voxc.core import audio_metrics, perceptual
    p, s, lv = [], [], []
    for r, o in zip(ref_audio, audio):
        r, o = np.asarray(r).reshape(-1), np.asarray(o).reshape(-1)
        if not np.all(np.isfinite(o)):
            p.append(1.0), s.append(0.0), lv.append(200.0)
            continue
        v = perceptual.scores(r, o, perceptual.PESQ_STOI)
        if not v:
            continue
        if np.isfinite(v["pesq_wb"]):
            p.append(v["pesq_wb"])
        s.append(v["stoi"]), lv.append(audio_metrics.level_db(r, o))
    return {"worst_pesq_wb": round(float(min(p)), 3) if p else None,
            "worst_stoi": round(float(min(s)), 4) if s else None,
            "worst_level_db": round(float(max(lv)), 3) if lv else None,
            "mean_pesq_wb": round(float(np.mean(p)), 3) if p else None, "items": len(s), "pesq_items": len(p)}


class _Context:
    """One model's data: calibration, validation, held-out evaluation items, timing feeds, references."""

    def __init__(self, folder: Path, manifest: dict, name: str, items: int):
        from voxc.calibration.feeds import FeedMaker, calibration_feeds, upstream_graphs, usable
        from voxc.compiler.verify import reference_module
        from voxc.models.family import model_spec
        from voxc.targets.runner import TorchRunner
        self.folder, self.name, self.manifest = folder, name, manifest
        cfg_all = manifest["preset_config"]
        self.cfg_all = cfg_all
        models = manifest["models"]
        if name not in models:
            raise VoxcError(f"int8 study: model '{name}' is not in {folder}")
        if "vocoder" not in models:
            raise VoxcError("int8 study: the target has no vocoder to judge audio with")
        self.spec = model_spec(name, models[name]["config"])
        need = set(upstream_graphs(name, cfg_all)) | {name, "vocoder"}
        if name == "vocoder" and "acoustic_decoder" in models:
            need |= set(upstream_graphs("acoustic_decoder", cfg_all)) | {"acoustic_decoder"}
        missing = need - set(models)
        if missing:
            raise VoxcError(f"int8 study of {name} needs {', '.join(sorted(missing))} in the build")
        self.refs = {n: TorchRunner(reference_module(folder / n, models[n]["config"], n), model_spec(n, models[n]["config"]))
                     for n in sorted(need)}
        up = {u: self.refs[u] for u in upstream_graphs(name, cfg_all)}
        self.maker = FeedMaker(name, self.spec, cfg_all, up)
        d = self.spec.dims[self.spec.sweep_dim]
        cal = calibration_feeds(self.maker, CALIBRATION_ITEMS + VALIDATION_ITEMS, max_length=d.opt)
        self.calibration, self.validation = cal[:-VALIDATION_ITEMS] or cal, cal[-VALIDATION_ITEMS:]
        utts = usable(name, self.maker.family.items("parity"), cfg_all)
        step = max(1, len(utts) // items)
        self.eval_feeds = []
        for u in utts[::step][:items]:
            n = int(np.clip(self.maker.family.item_length(u, self.spec.sweep_dim, cfg_all), d.min, min(d.max, EVAL_MAX_FRAMES)))
            self.eval_feeds.append(self._inputs(self.maker.item(u, n)))
        from voxc.calibration.feeds import sweep_feeds
        self.timing_feeds = self._inputs(sweep_feeds(self.maker, 1, d.opt))
        from voxc.models.pipeline import Pipeline
        self.pipeline = Pipeline(self.maker.family, cfg_all, self.refs, {n: r.spec for n, r in self.refs.items()})
        self.ref_audio = [self.audio(self.refs[name].infer(f)) for f in self.eval_feeds]
        self._predicted = None

    def _inputs(self, f: dict) -> dict:
        return {t.name: f[t.name] for t in self.spec.inputs}

    def audio(self, out: dict) -> np.ndarray:
        """Audio for one output of the studied graph: the family pipeline runs whatever lies between it and
        the waveform on the PyTorch FP32 reference modules (for the vocoder: nothing)."""
        step = self.maker.family.step_of(self.name)
        values = {step.outputs.get(t.name, t.name): _float32(out[t.name]) for t in self.spec.outputs}
        return self.pipeline.run(values, [AUDIO]).values[AUDIO]

    def calibration_for(self, kind: str) -> list[dict]:
        if kind == "real":
            return self.calibration
        if kind != "real+predicted" or self.name != "vocoder":
            raise VoxcError(f"int8 study: calibration '{kind}' is not available for {self.name}")
        if self._predicted is None:      # the PyTorch decoder's mels on calibration-set utterances
            from voxc.calibration.feeds import FeedMaker, calibration_feeds, upstream_graphs
            dspec = self.refs["acoustic_decoder"].spec
            dmaker = FeedMaker("acoustic_decoder", dspec, self.cfg_all,
                               {u: self.refs[u] for u in upstream_graphs("acoustic_decoder", self.cfg_all)})
            dfeeds = calibration_feeds(dmaker, CALIBRATION_ITEMS // 2, max_length=dspec.dims[dspec.sweep_dim].opt)
            dstep = self.maker.family.step_of("acoustic_decoder")
            self._predicted = []
            for f in dfeeds:        # the pipeline runs the decoder (and any host step after it) on PyTorch
                feeds = self.pipeline.inputs_of(self.name, {dstep.inputs.get(t.name, t.name): f[t.name]
                                                            for t in dspec.inputs})
                self._predicted.append({k: _float32(v) for k, v in feeds.items()})
        return self.calibration[: CALIBRATION_ITEMS - len(self._predicted)] + self._predicted


def _float32(v) -> np.ndarray:
    v = np.asarray(v)
    return v.astype(np.float32) if v.dtype.kind == "f" else v


def _reason(exc: Exception) -> str:
    """The informative line of an exception (OpenVINO puts its check on a later line)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return next((ln for ln in lines if ln.startswith("Check ")), lines[0] if lines else "")[:200]


def _fp32_artifact(folder: Path, info: dict, runtime: str) -> Path | None:
    a = next((a for a in info["artifacts"] if a["runtime"] == runtime and a["precision"] == "fp32"
              and a.get("role") in ("model", "package")), None)
    return folder / a["path"] if a else None


def study_model(folder: Path, manifest: dict, name: str, runtimes=RUNTIMES, names=None, runs: int = 15,
                items: int = EVAL_ITEMS, work: Path | None = None, log=print) -> dict:
    from voxc.compiler import policy
    from voxc.models.spec import PERCEPTUAL
    from voxc.targets import backend
    t0 = time.perf_counter()
    ctx = _Context(folder, manifest, name, items)
    source = folder / name / f"{name}.onnx"
    work = work or folder.parent / f"{folder.name}.int8-study" / name
    profile = _profile_keep(manifest, name)
    configs = configs_for(name, runtimes, names)
    ranking = None
    if any(c["keep"] > 0 for c in configs):
        log(f"voxc: int8 study {name}: ranking layers by the int8 gate score on {len(ctx.validation)} validation items")
        by = ranker(runtimes)
        ranking = rank_layers(source, ctx.spec, ctx.calibration, ctx.validation, profile.get(by, []), by)
    rows, runners = [], {}
    for rt in runtimes:
        fp32 = _fp32_artifact(folder, manifest["models"][name], rt)
        if fp32 is None or backend(rt).unavailable():
            continue
        runners[rt] = {"fp32": backend(rt).open(fp32, threads=1)}
        rows.append({"model": name, "runtime": rt, "config": "fp32", "precision": "fp32", "keep": 0,
                     "fp32_nodes": 0, "artifact": str(fp32.relative_to(folder))})
    for c in configs:
        rt = c["runtime"]
        if rt not in runners:
            continue
        # the k most sensitive of the layers this configuration quantises (ORT op_types; all on OpenVINO)
        types = c["options"].get("op_types")
        ranked = [n for n in (ranking or {}).get("ranked", []) if types is None or ranking["ops"][n] in types]
        top = [ranking["weights"][n] for n in ranked[: c["keep"]]] if c["keep"] else []
        keep = [k for k in profile.get(rt, []) if k not in c.get("drop_keep", [])] + [w for w in top if w]
        log(f"voxc: int8 study {name}: building {rt}/{c['name']}")
        try:                       # a configuration that cannot be built or loaded is a row with the reason
            path, rec = build_config(c, source, ctx.spec, ctx.calibration_for(c.get("calibration", "real")), keep,
                                     work, base=_profile_options(manifest, rt, name))
            loaded = backend(rt).open(path, threads=1)
        except Exception as exc:
            rows.append({"model": name, "runtime": rt, "config": c["name"], "precision": "int8", "keep": c["keep"],
                         "error": f"{type(exc).__name__}: {_reason(exc)}"})
            continue
        runners[rt][c["name"]] = loaded
        rows.append({"model": name, "runtime": rt, "config": c["name"], "precision": "int8", "keep": c["keep"],
                     "options": c["options"], "calibration": c.get("calibration", "real"),
                     "fp32_nodes": len(rec.get("fp32_nodes", [])), "build_s": rec.get("build_s"),
                     "reused": bool(rec.get("reused")), "artifact": str(path.relative_to(work.parent.parent))})
    for rt, rs in runners.items():
        log(f"voxc: int8 study {name}: timing {len(rs)} {rt} graphs in paired rounds")
        t = policy.time_interleaved(rs, ctx.timing_feeds, runs=runs)
        for r in rows:
            if r["runtime"] != rt or r["config"] not in rs:
                continue
            s = policy.speedup(t["fp32"], t[r["config"]])
            r.update(median_ms=round(t[r["config"]]["median_ms"], 3), speed_ratio=round(s["ratio"], 3),
                     speed_low=round(s["low"], 3), speed_high=round(s["high"], 3))
            out = [rs[r["config"]].infer(f) for f in ctx.eval_feeds]
            r.update(_audio_scores(ctx.ref_audio, [ctx.audio(o) for o in out]))
    budget = PERCEPTUAL["int8"]
    for r in rows:
        r.update(verdicts(r, budget) if "error" not in r else
                 {"passes_budget": False, "faster": False, "would_ship": False, "goal": False})
    pareto(rows)
    d = ctx.spec.dims[ctx.spec.sweep_dim]
    return {"model": name, "rows": rows, "timing_shape": {"batch": 1, ctx.spec.sweep_dim: d.opt},
            "eval_items": len(ctx.eval_feeds), "eval_reference": "PyTorch FP32" + ("" if name == "vocoder" else
                                                                                   " decoder + vocoder"),
            "ranking": ranking and {k: ranking[k] for k in ("score_all_int8", "trials", "weights", "ops")},
            "profile_keep_fp32": profile, "seconds": round(time.perf_counter() - t0, 1)}


def _profile_options(manifest: dict, runtime: str, model: str) -> dict:
    prof = manifest.get("profile") if isinstance(manifest.get("profile"), dict) else {}
    return dict(prof.get("options", {}).get(runtime, {}).get("models", {}).get(model, {}))


def _profile_keep(manifest: dict, model: str) -> dict:
    """The build profile's (as recorded in the manifest) static keep_fp32 prefixes for the model, per runtime."""
    out = {}
    prof = manifest.get("profile")
    if not isinstance(prof, dict):
        from voxc.targets import profiles
        prof = profiles.load(manifest.get("target") or "cpu")
    opts = prof.get("options", {})
    for rt in RUNTIMES:
        out[rt] = list(opts.get(rt, {}).get("models", {}).get(model, {}).get("keep_fp32", []))
    return out


def run_study(artifacts: Path, target: str, models=DEFAULT_MODELS, runtimes=RUNTIMES, names=None,
              runs: int | None = None, items: int = EVAL_ITEMS, log=print) -> dict:
    from voxc.compiler.verify import load_manifest
    folder = Path(artifacts) / target
    manifest = load_manifest(folder)
    os.environ.setdefault("VOXC_THREADS", "1")
    import torch
    torch.set_num_threads(1)
    doc = {"goal": GOAL, "margin": MARGIN, "threads": 1, "runs": runs or 15, "budget": None, "models": {}}
    from voxc.models.spec import PERCEPTUAL
    doc["budget"] = {k: v for k, v in PERCEPTUAL["int8"].items()}
    for m in models:
        doc["models"][m] = study_model(folder, manifest, m, runtimes, names, runs or 15, items, log=log)
    write_study(folder, doc)
    return doc


# ---- reporting -------------------------------------------------------------------------------------

def _f(v, nd=3):
    return "" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def study_markdown(doc: dict) -> str:
    g = doc["goal"]
    lines = [SECTION, "",
             f"`voxc bench --int8-study` (voxc/int8_study.py): INT8 configurations of each model built from the "
             f"portable fp32 ONNX with the real calibration feeds; speed = fp32 artifact ms / config ms at the opt shape, "
             f"{doc['threads']} thread, {doc['runs']} runs in 5 paired rounds (ratio = median of the round ratios, "
             f"low = worst round; the build ships a rung only at low >= {1 + doc['margin']:.2f}); quality = the worst "
             f"held-out parity item's PESQ-WB / STOI / level change vs PyTorch FP32 audio (DNSMOS not computed). "
             f"budget = the int8 perceptual budget (PESQ-WB >= {doc['budget']['pesq_wb']}, STOI >= {doc['budget']['stoi']}, "
             f"level <= {doc['budget']['level_db']} dB); goal = (low >= {g['speed_ratio_low']}x, PESQ-WB >= "
             f"{g['pesq_wb']}, STOI >= {g['stoi']}). **P** = on the Pareto front of speed ratio vs worst PESQ-WB "
             "(per model and runtime).", "",
             "Configs: ORT `pc`/`pt` = per-channel / per-tensor weights (int8), `u8rr` = uint8 activations with "
             "reduce_range (7-bit weights), `u8` = full-range, `s8sym` = int8 symmetric activations, `pctl` = percentile "
             "calibration, `gemm` = only MatMul/Gemm quantised (convolutions float), `realpred` = calibrated on real + "
             "PyTorch-decoder mels, `qhead` = the Vocos phase head (`out.`) quantised too; OpenVINO `mixed`/`perf` = NNCF "
             "preset, `fullbc` = full bias correction, `sq`/`nosq` = SmoothQuant on/off, `mm` = convolutions in the "
             "ignored scope, `of` = NNCF overflow fix in every layer (7-bit weights), `ew` = element-wise ops (Add, Multiply, Subtract, Divide, Select) in the ignored scope. `kN` = the N most sensitive quantised layers (ranked by the int8 gate score) kept float, on "
             "top of the profile's keep_fp32 layers; 'layers float' counts all weighted layers left float.", ""]
    for name, m in doc["models"].items():
        lines += [f"### {name}", "",
                  f"{m['eval_items']} held-out items vs {m['eval_reference']} audio; timing shape "
                  + ", ".join(f"{k} {v}" for k, v in m["timing_shape"].items()) + f"; {m['seconds']} s.", "",
                  "| runtime | config | layers float | ms | speed ratio (low..high) | worst PESQ-WB | worst STOI | "
                  "worst level dB | mean PESQ-WB | Pareto | budget | ships | goal |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        rows = sorted(m["rows"], key=lambda r: (r["runtime"], -(r.get("speed_ratio") or 0)))
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['runtime']} | {r['config']} | | | | | | | | | failed: {r['error'][:80]} | | |")
                continue
            yn = lambda b: "yes" if b else "no"
            lines.append(f"| {r['runtime']} | {r['config']} | {r.get('fp32_nodes', '')} | {_f(r.get('median_ms'), 2)} | "
                         f"{_f(r.get('speed_ratio'), 2)} ({_f(r.get('speed_low'), 2)}..{_f(r.get('speed_high'), 2)}) | "
                         f"{_f(r.get('worst_pesq_wb'))} | {_f(r.get('worst_stoi'), 4)} | {_f(r.get('worst_level_db'), 2)} | "
                         f"{_f(r.get('mean_pesq_wb'))} | {'**P**' if r['pareto'] else ''} | "
                         f"{yn(r['passes_budget'])} | {yn(r['would_ship']) if r['precision'] == 'int8' else ''} | "
                         f"{yn(r['goal']) if r['precision'] == 'int8' else ''} |")
        best = [r for r in m["rows"] if r["precision"] == "int8" and r["goal"]]
        lines += ["", ("goal reached by: " + ", ".join(f"{r['runtime']}/{r['config']}" for r in best)) if best
                  else "goal not reached by any configuration.", ""]
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str) -> str:
    """bench.md with the INT8 study section replaced (or added before any serving sections, which
    `voxc loadtest` rewrites from their header on); every other section is kept as it is."""
    start = text.find("\n" + SECTION)
    if start >= 0:
        nxt = text.find("\n## ", start + 1 + len(SECTION))
        text = text[:start] + (text[nxt:] if nxt >= 0 else "\n")
    serving = text.find("\n## Serving")
    body = "\n" + section.rstrip("\n") + "\n"
    if serving >= 0:
        return text[:serving].rstrip("\n") + "\n" + body + text[serving:]
    return text.rstrip("\n") + "\n" + body


def write_study(folder: Path, doc: dict) -> None:
    bench = folder / "bench.json"
    current = json.loads(bench.read_text()) if bench.is_file() else {}
    current["int8_study"] = doc
    write_atomic(bench, json.dumps(current, indent=1, default=float))
    md = folder / "bench.md"
    text = md.read_text() if md.is_file() else f"# voxc bench: {folder.name}\n"
    write_atomic(md, replace_section(text, study_markdown(doc)))
