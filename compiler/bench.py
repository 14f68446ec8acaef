"""`voxc bench --target T`: latency, real-time factor, size and peak memory of a built target's
artifacts, each next to PyTorch eager FP32 measured in the same process, plus the whole chain.

Every measurement interleaves the artifact and PyTorch runs on the same real held-out inputs
(calibration/feeds.sweep_feeds) at short / opt / long lengths, medians after warm-up, so ratios hold
even while the machine is shared. The vocoder's achieved GFLOP/s is set against the machine's FP32
peak, measured once with a large matrix product. Writes artifacts/T/bench.json and bench.md.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from voxc.calibration.feeds import FeedMaker, sweep_feeds, upstream_graphs
from voxc.compiler import policy
from voxc.compiler.chain import chain_utterances, output_rate
from voxc.compiler.verify import reference_module, load_manifest
from voxc.core.atomic import write_atomic
from voxc.core.target import portable
from voxc.core.errors import VoxcError
from voxc.models.family import HostStep, family_of, model_spec
from voxc.models.pipeline import Pipeline
from voxc.targets import backend
from voxc.targets.runner import TorchRunner


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb(fn) -> float | None:
    """Peak resident memory (MiB) that fn adds over the process's current RSS: the kernel's
    high-water mark is reset first (/proc/self/clear_refs '5'); None where that is unavailable."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    before = _status_kb("VmRSS")
    keep = fn()
    peak = _status_kb("VmHWM")
    del keep
    return None if before is None or peak is None else round(max(peak - before, 0) / 1024, 1)


def machine_peak_gflops(n: int = 2048) -> float:
    """FP32 GEMM throughput (numpy, best of 3): the machine's practical ceiling."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def conv_flops(module: torch.nn.Module, feeds: dict, spec) -> float:
    """FLOPs (2 x MACs) of the Conv1d / ConvTranspose1d / Linear layers for one forward pass, plus a
    module's constant matrix products where it declares them (fixed_macs, e.g. Vocos's inverse DFT)."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, torch.nn.ConvTranspose1d):
            total[0] += inp[0].numel() * m.out_channels // m.groups * m.kernel_size[0]
        elif isinstance(m, torch.nn.Conv1d):
            total[0] += out.numel() * m.in_channels // m.groups * m.kernel_size[0]
        elif isinstance(m, torch.nn.Linear):
            total[0] += out.numel() * m.in_features
    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.Linear))]
    TorchRunner(module, spec).infer(feeds)
    for h in handles:
        h.remove()
    if hasattr(module, "fixed_macs"):
        first = next(iter(feeds.values()))
        total[0] += module.fixed_macs(first.shape[0], first.shape[-1])
    return 2.0 * total[0]


def shapes(spec, quick: bool) -> dict[str, int]:
    d = spec.dims[spec.sweep_dim]
    out = {"short": max(d.min, d.opt // 4), "opt": d.opt, "long": min(d.max, 2 * d.opt)}
    return {"short": out["short"], "opt": out["opt"]} if quick else out


def _artifact_runners(folder: Path, info: dict, threads: int, skipped: dict) -> dict[str, tuple[object, dict]]:
    """Loaders of a model's artifacts this host can run; the others go into `skipped` with the reason."""
    out = {}
    for a in info["artifacts"]:
        if portable(a) or a.get("role") == "weights":
            continue
        why = backend(a["runtime"]).unavailable()
        if why:
            skipped[a["runtime"]] = why
            continue
        size = sum(f["bytes"] for f in info["artifacts"] if f["runtime"] == a["runtime"]
                   and f["precision"] == a["precision"])
        load = lambda a=a: backend(a["runtime"]).open(folder / a["path"], threads=threads)
        out[f"{a['runtime']}/{a['precision']}"] = (load, {"size_bytes": size})
    return out


def _from_text(fam) -> set[str]:
    """Values the family's front end makes from the text (a data item's own copies are dropped when a
    --text is timed, so the text is what gets spoken)."""
    return {w for s in fam.steps if isinstance(s, HostStep) and "text" in s.reads for w in s.writes}


def text_inputs(fam, preset: dict, item, text: str, overrides: dict) -> dict:
    """Pipeline inputs of a --text run: the held-out item's voice and style, the given text and
    --input values, and none of the item's values its front end would make from the text."""
    own = {k: v for k, v in fam.item_inputs(item, preset).items() if k not in _from_text(fam)}
    return {**own, **overrides, "text": text}


def check_speech_request(manifest: dict, texts: tuple[str, ...], inputs: dict) -> None:
    """Refuses, before any timing, a --text / --input the chain benchmark would not use as given: inputs
    without a text, a target without the family's whole chain, an empty text, an input name the family's
    pipeline does not take, and text or values its front end cannot read."""
    preset = manifest["preset_config"]
    fam = family_of(preset)
    if inputs and not texts:
        raise VoxcError("--input sets a pipeline input of the --text runs; pass --text too")
    if not texts:
        return
    missing = sorted(set(fam.graph_names) - set(manifest["models"])) if fam.chain is not None else ["its chain"]
    if missing:
        raise VoxcError(f"--text times the whole chain, and this target lacks {', '.join(missing)} of family "
                        f"{fam.name}; rebuild without --models")
    pipe = Pipeline(fam, preset, {})
    reads = {r for s in fam.steps for r in pipe.reads(s) + list(getattr(s, "optional", ()))}
    takes = sorted(reads - {w for s in fam.steps for w in pipe.writes(s)} - {"text"})
    for name in inputs:
        if name not in takes:
            raise VoxcError(f"--input {name}: the {fam.name} pipeline takes no input of that name; choose from "
                            f"{', '.join(takes)} (the text goes in --text)")
    for text in texts:
        if not text.strip():
            raise VoxcError("--text is empty; give a sentence to time")
        values = {**inputs, "text": text}
        for step in fam.steps:        # the front end's host steps the text and inputs feed: errors are one line
            if isinstance(step, HostStep) and step.reads and set(step.reads) <= set(values):
                try:
                    step.fn(values, preset)
                except VoxcError as exc:
                    raise VoxcError(f"--text '{text[:40]}'{' with --input' if inputs else ''}: {exc}") from None


def bench_target(artifacts: Path, target: str, quick: bool = False, runs: int | None = None,
                 texts: tuple[str, ...] = (), inputs: dict | None = None) -> dict:
    folder = artifacts / target
    manifest = load_manifest(folder)
    check_speech_request(manifest, texts, inputs or {})
    threads = int(os.environ.get("VOXC_THREADS", "0") or 0) or (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    runs = runs or (3 if quick else 20)
    warmup = 1 if quick else 3
    cfg_all = manifest["preset_config"]
    refs = {n: TorchRunner(reference_module(folder / n, i["config"], n), model_spec(n, i["config"]))
            for n, i in manifest["models"].items()}
    results, fastest, skipped = [], {}, {}
    peak = machine_peak_gflops(1024 if quick else 2048)
    for name, info in manifest["models"].items():
        spec = model_spec(name, info["config"])
        upstream = upstream_graphs(name, cfg_all)
        if any(u not in refs for u in upstream):
            raise VoxcError(f"bench needs {name}'s upstream graphs in the build; rebuild without --models")
        maker = FeedMaker(name, spec, cfg_all, {u: refs[u] for u in upstream})
        loaders = _artifact_runners(folder, info, threads, skipped)
        mem = {k: peak_rss_mb(lambda ld=ld, k=k: _load_and_run(ld, maker, spec)) for k, (ld, _) in loaders.items()}
        mem["torch/fp32"] = peak_rss_mb(lambda: _load_torch(folder, info, name, maker, spec))
        runners = {"torch/fp32": refs[name], **{k: ld() for k, (ld, _) in loaders.items()}}
        torch_size = (folder / info["reference"]["path"]).stat().st_size
        for shape, n in shapes(spec, quick).items():
            feeds = sweep_feeds(maker, 1, n)
            feeds = {t.name: feeds[t.name] for t in spec.inputs}
            t = policy.time_interleaved(runners, feeds, runs=runs, warmup=warmup)
            audio_s = _audio_seconds(spec, n)
            flops = conv_flops(refs[name].module, feeds, spec) if audio_s else None
            for k, v in t.items():
                runtime, precision = k.split("/")
                row = {"model": name, "runtime": runtime, "precision": precision, "shape": shape, "length": n,
                       "median_ms": round(v["median_ms"], 3), "p90_ms": round(v["p90_ms"], 3),
                       "rtf": round(v["median_ms"] / 1e3 / audio_s, 5) if audio_s else None,
                       "vs_torch_eager": round(t["torch/fp32"]["median_ms"] / v["median_ms"], 3),
                       "size_bytes": loaders[k][1]["size_bytes"] if k in loaders else torch_size,
                       "peak_rss_mb": mem.get(k)}
                if flops:
                    row["gflops"] = round(flops / (v["median_ms"] / 1e3) / 1e9, 2)
                    row["peak_fraction"] = round(row["gflops"] / peak, 4)
                results.append(row)
            if shape == "opt":
                best = min((k for k in t if k in loaders), key=lambda k: t[k]["median_ms"], default=None)
                if best:
                    fastest[name] = best
    doc = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "cpus": os.cpu_count(), "fp32_peak_gflops": round(peak, 2)},
           "threads": threads, "runs": runs, "quick": quick, "preset": manifest["preset"],
           "results": results, "skipped": skipped,
           "chain": _bench_chain(refs, folder, manifest, fastest, threads, runs, warmup),
           "texts": [_bench_chain(refs, folder, manifest, fastest, threads, runs, warmup, text=t, inputs=inputs)
                     for t in texts]}
    for runtime, why in skipped.items():
        print(f"voxc: bench skips {runtime}: {why}", flush=True)
    write_atomic(folder / "bench.json", json.dumps({**_kept(folder)[0], **doc}, indent=1))
    write_atomic(folder / "bench.md", bench_markdown(target, doc) + _kept(folder)[1])
    print(bench_markdown(target, doc))
    return doc


OTHER_SECTIONS = {"int8_study": "\n## INT8 study", "serve": "\n## Serving"}   # written by other commands


def _kept(folder: Path) -> tuple[dict, str]:
    """What other commands wrote into bench.json / bench.md (`voxc bench --int8-study`, `voxc loadtest`):
    kept when `voxc bench` rewrites its own part."""
    try:
        old = json.loads((folder / "bench.json").read_text())
    except (OSError, ValueError):
        old = {}
    md = (folder / "bench.md").read_text() if (folder / "bench.md").is_file() else ""
    cuts = [i for i in (md.find(m) for m in OTHER_SECTIONS.values()) if i >= 0]
    return ({k: old[k] for k in OTHER_SECTIONS if isinstance(old, dict) and k in old},
            ("\n" + md[min(cuts):].lstrip("\n")) if cuts else "")


def _load_and_run(load, maker, spec):
    r = load()
    d = spec.dims[spec.sweep_dim]
    r.infer({t.name: v for t, v in zip(spec.inputs, (sweep_feeds(maker, 1, d.opt)[t.name] for t in spec.inputs))})
    return r


def _load_torch(folder, info, name, maker, spec):
    r = TorchRunner(reference_module(folder / name, info["config"], name), spec)
    return _load_and_run(lambda: r, maker, spec)


def _audio_seconds(spec, n: int) -> float | None:
    """Seconds of audio a waveform-producing graph makes at sweep length n (None for other graphs)."""
    wave = next((t for t in spec.outputs if t.kind == "waveform"), None)
    if wave is None:
        return None
    return spec.output_shape(wave, {"batch": 1, spec.sweep_dim: n})[-1] / spec.sample_rate


def _bench_chain(refs: dict, folder: Path, manifest: dict, fastest: dict, threads: int, runs: int, warmup: int,
                 text: str | None = None, inputs: dict | None = None):
    """The family's whole dataflow with PyTorch eager vs the fastest accepted artifact of each graph,
    with per-step timings of the artifact pipeline: a held-out item with its timing forced, or `text`
    spoken in that item's voice and style (front end included, free timing)."""
    preset = manifest["preset_config"]
    fam = family_of(preset)
    if fam.chain is None or set(fam.graph_names) - set(refs) or set(fam.graph_names) - set(fastest):
        return None
    arts = {}
    for n in fam.graph_names:
        runtime, precision = fastest[n].split("/")
        entry = next(a for a in manifest["models"][n]["artifacts"] if a["runtime"] == runtime
                     and a["precision"] == precision and a.get("role") != "weights")
        arts[n] = backend(runtime).open(folder / entry["path"], threads=threads)
    u = chain_utterances(preset, 1)[0]
    pipes = {"torch": Pipeline(fam, preset, refs), "voxc": Pipeline(fam, preset, arts)}
    # the reference (aligned) durations are forced so the clip has the utterance's real length whatever
    # the duration predictor says (an untrained one predicts 1 frame per phone)
    overrides = inputs or {}
    inputs = fam.item_inputs(u, preset, forced=True) if text is None else text_inputs(fam, preset, u, text, overrides)
    speak = {k: (lambda p=p: p.run(inputs, [fam.chain.output])) for k, p in pipes.items()}

    class _Call:
        def __init__(self, fn):
            self.fn = fn

        def infer(self, _):
            return self.fn()
    t = policy.time_interleaved({k: _Call(f) for k, f in speak.items()}, {}, runs=runs, warmup=warmup)
    last = speak["voxc"]()
    samples = last.values[fam.chain.output].shape[-1]
    seconds = samples / output_rate(preset)           # the chained output's rate (its producing graph's spec)
    return {"utterance": u.utt_id, "audio_seconds": round(seconds, 3),
            "torch_eager_ms": round(t["torch"]["median_ms"], 2), "voxc_ms": round(t["voxc"]["median_ms"], 2),
            "ratio": round(t["torch"]["median_ms"] / t["voxc"]["median_ms"], 3),
            "rtf_torch": round(t["torch"]["median_ms"] / 1e3 / seconds, 4),
            "rtf_voxc": round(t["voxc"]["median_ms"] / 1e3 / seconds, 4),
            "steps_ms": {k: round(v, 2) for k, v in last.timings.items()},
            "accepted": fastest, **({"text": text} if text else {})}


def bench_markdown(target: str, doc: dict) -> str:
    m = doc["machine"]
    lines = [f"# Benchmark: target `{target}` (preset {doc['preset']})", "",
             f"{m['processor']}, {m['cpus']} CPUs, {doc['threads']} threads; FP32 GEMM peak "
             f"{m['fp32_peak_gflops']} GFLOP/s; {doc['runs']} timed runs per cell, medians after warm-up, "
             "PyTorch eager measured interleaved in the same process.", ""]
    c = doc.get("chain")
    if c:
        lines += ["## Chain (text -> waveform)", "",
                  f"{c['audio_seconds']} s of audio: PyTorch eager {c['torch_eager_ms']} ms (RTF {c['rtf_torch']}), "
                  f"voxc {c['voxc_ms']} ms (RTF {c['rtf_voxc']}): **{c['ratio']}x**", "",
                  "accepted: " + ", ".join(f"{k} {v}" for k, v in c["accepted"].items()), ""]
    for t in doc.get("texts") or []:
        total = sum(t["steps_ms"].values()) or 1.0
        lines += [f"### \"{t['text'][:60]}\"", "",
                  f"{t['audio_seconds']} s of audio: PyTorch eager {t['torch_eager_ms']} ms (RTF {t['rtf_torch']}), "
                  f"voxc {t['voxc_ms']} ms (RTF {t['rtf_voxc']}): **{t['ratio']}x**; steps: "
                  + ", ".join(f"{k} {v} ms ({100 * v / total:.0f} %)" for k, v in t["steps_ms"].items()), ""]
    if doc.get("skipped"):
        lines += ["Not measured here: " + "; ".join(f"{k} ({v})" for k, v in doc["skipped"].items()), ""]
    lines += ["## Per graph", "", "| model | runtime | precision | shape | length | median ms | p90 ms | RTF | "
              "vs torch eager | size MB | peak RSS MB | GFLOP/s (of peak) |", "|---|" + "---|" * 11]
    for r in doc["results"]:
        g = f"{r['gflops']} ({100 * r['peak_fraction']:.1f} %)" if "gflops" in r else ""
        lines.append(f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['shape']} | {r['length']} | "
                     f"{r['median_ms']} | {r['p90_ms']} | {r['rtf'] if r['rtf'] is not None else ''} | "
                     f"{r['vs_torch_eager']}x | {r['size_bytes'] / 1e6:.2f} | {r['peak_rss_mb']} | {g} |")
    return "\n".join(lines) + "\n"
