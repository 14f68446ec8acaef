"""Chained parity: the whole family dataflow with artifacts in place of graphs, drift attributed to a stage.

chain_parity compares, on held-out parity utterances, the all-PyTorch pipeline with the pipeline built
from every artifact and with pipelines where one graph at a time is swapped for its artifact (the
family's dataflow, models/pipeline.py, with runners swapped). For the output comparison the family's
forcing inputs (reference durations) are passed so lengths line up; the free-running timing values
the family names (predicted durations, frame count) are compared separately.
"""
from __future__ import annotations

import numpy as np

from voxc.core import metrics
from voxc.compiler.plan import ChainParams, GraphPlan
from voxc.models.family import Preset, family_of, model_spec
from voxc.models.pipeline import Pipeline
from voxc.models.spec import preset_dim

AUDIO = ("pesq_wb", "stoi", "dnsmos_ovrl_drop", "level_db", "snr_db", "snr_voiced_db", "mrstft", "logmel_l1", "mcd_db")


def needs_alignment(fam) -> bool:
    """Whether the family's chain needs items with phone alignments: some graph is fed from them (a Feed
    declared aligned) or the chain forces timing inputs. A family fed from audio alone takes every item."""
    return any(f.aligned for f in fam.feeds.values()) or bool(fam.chain and fam.chain.forced)


def chain_utterances(preset: dict, count: int):
    """Held-out parity utterances that fit the preset's ranges (every graph's max length); only aligned
    ones where the family's chain needs alignments (needs_alignment)."""
    fam = family_of(preset)
    aligned = needs_alignment(fam)
    utts = [u for u in fam.items("parity") if (u.aligned or not aligned) and fam.item_fits(u, preset)]
    step = max(1, len(utts) // max(count, 1))
    return utts[::step][:count]


def _forced(fam, u, preset: Preset) -> dict:
    return fam.item_inputs(u, preset, forced=True)


def _free_want(check) -> list[str]:
    return list(dict.fromkeys([n for n in (check.durations, check.frames) if n] + list(check.pin.values())))


def _free_metrics(check, ref: dict, got: dict) -> dict:
    vals = {}
    if check.durations:
        vals.update(metrics.durations(np.asarray(ref[check.durations]).ravel(), np.asarray(got[check.durations]).ravel()))
    if check.frames:
        rf = int(ref[check.frames])
        vals["frame_drift"] = abs(int(got[check.frames]) - rf) / max(rf, 1)
    return vals


def output_metrics(kind: str, ref: np.ndarray, out: np.ndarray, sample_rate: int = 16000) -> dict:
    """Every metric of the output's kind, the perceptual ones included (chained parity and streaming);
    waveforms are audio at sample_rate (the producing graph's ModelSpec says it)."""
    return metrics.compare(kind, ref, out, sample_rate=sample_rate)


def output_rate(cfg: dict) -> int:
    """The sample rate of the family's chained output (its producing graph's spec)."""
    from voxc.models.family import model_config
    fam = family_of(cfg)
    graph = Pipeline(fam, cfg, {}).producer(fam.chain.output)
    return model_spec(graph, model_config(graph, cfg)).sample_rate if graph else 16000


NO_ITEMS = "items"      # the metric a gate with no usable item fails on


def chain_parity(reference: dict, artifacts: dict, preset: Preset, budget: dict, count: int = 3,
                 label: str = "", fallback: dict | None = None) -> dict:
    """Rows per configuration ('all artifacts', 'only <graph>'), each the worst over `count` held-out
    utterances; `budget` maps metric -> tolerance for the metrics it names. A budgeted metric no item
    could measure (clips too short, or no speech for PESQ/STOI to find) is recorded as unmeasurable,
    and the row is then held to `fallback` (the strict fp32 signal budget) instead: what cannot be
    heard-checked must match sample for sample."""
    fam = family_of(preset)
    check = fam.chain
    configs = {"all artifacts": dict(artifacts)}
    for s in fam.graph_names:
        if s in artifacts:
            configs[f"only {s}"] = {**reference, s: artifacts[s]}
    ref_pipe = Pipeline(fam, preset, reference)
    utts, free, frees = [], [], []
    first = chain_utterances(preset, count)
    spare = [u for u in chain_utterances(preset, 4 * count) if all(u is not f for f in first)]
    for u in first + spare:                            # items whose predicted length fits every graph's range
        f = fam.item_inputs(u, preset)
        fr = ref_pipe.run(f, _free_want(check)).values
        if check.frames and "frames" in preset["dims"] and int(fr[check.frames]) > preset_dim(preset, "frames").max:
            continue
        utts.append(u), free.append(f), frees.append(fr)
        if len(utts) == count:
            break
    # forced timing: the item's own (aligned durations) plus values pinned from the reference's free run
    forced_in = [{**_forced(fam, u, preset), **{k: np.asarray(fr[v]).reshape(-1) for k, v in check.pin.items()}}
                 for u, fr in zip(utts, frees)]
    refs = [(ref_pipe.run(fi, [check.output]).values, fr) for fi, fr in zip(forced_in, frees)]
    rate = output_rate(preset)
    if not utts:      # nothing to compare is a failure with its reason, never a pass
        why = (f"no usable parity item: none {'aligned and ' if needs_alignment(fam) else ''}within the preset's "
               "ranges; give longer/shorter audio or widen the dims")
        return {"runtime": label, "utterances": [], "budget": budget, "reason": why, "note": why,
                "rows": [{"config": name, "unmeasurable": sorted(budget), "within_budget": False,
                          "over_budget": [NO_ITEMS], "reason": why} for name in configs]}
    rows = []
    for name, runners in configs.items():
        pipe = Pipeline(fam, preset, {**reference, **runners})
        worst: dict[str, float] = {}
        seen: set[str] = set()
        for fi, f, (forced_ref, free_ref) in zip(forced_in, free, refs):
            forced = pipe.run(fi, [check.output]).values
            vals = {**output_metrics(check.kind, forced_ref[check.output], forced[check.output], rate),
                    **_free_metrics(check, free_ref, pipe.run(f, _free_want(check)).values)}
            for k, v in vals.items():
                if not np.isfinite(v):      # e.g. PESQ finds no speech in the reference: not measurable there
                    continue
                if k not in worst or (v > worst[k] if k in metrics.LOWER_IS_BETTER else v < worst[k]):
                    worst[k] = float(v)
        unmeasurable = sorted(k for k in budget if k not in worst and k not in ("exact_match", "frame_drift"))
        row = {"config": name, **worst, "unmeasurable": unmeasurable}
        if unmeasurable and fallback:
            row["fallback_budget"] = fallback
        failed = [k for k, *_ in _over(row, budget)]
        rows.append({**row, "within_budget": not failed, "over_budget": failed})
    return {"runtime": label, "utterances": [u.utt_id for u in utts], "budget": budget, "rows": rows,
            "note": "waveform metrics with reference durations forced; exact_match and frame_drift from the "
                    "unforced chain (predicted durations)"}


def chain_markdown(chains: dict) -> list[str]:
    """parity.md section: one table per runtime, rows 'all artifacts' then each stage swapped alone."""
    lines = ["", "## Chained parity (text -> waveform, against the all-PyTorch chain)", "",
             "The chain gate judges each `only <stage>` row by the perceptual budget of that stage's own precision "
             "(PESQ-WB, STOI, DNSMOS OVRL drop, level change at the audio output) and the unforced chain's "
             "durations, and a stage over it falls back to its fallback precision. The `all artifacts` row must "
             "then pass the perceptual budget of the loosest accepted precision (the budget column), or the stage "
             "that moved the audio most alone falls back, until it does or every stage is at its fallback; a "
             "whole chain still over its budget fails the build. Signal metrics (SNR, MR-STFT, log-mel, MCD) "
             "are diagnostics here.", ""]
    for d in chains.get("demotions", []):
        lines.append(f"- chain gate: {d['model']} on {d['runtime']}: {d['reason']}; fell back to {d['to']}")
    if chains.get("demotions"):
        lines.append("")
    for runtime, c in chains.get("runtimes", {}).items():
        verdict = "" if "passed" not in c else " -- whole chain PASS" if c["passed"] else " -- whole chain FAIL"
        lines += [f"### {runtime} (utterances {', '.join(c['utterances'])}; {c['note']}; budget of "
                  f"{c.get('budget_precision', '?')}: " + ", ".join(f"{k} {v:g}" for k, v in c["budget"].items())
                  + f"){verdict}", "",
                  "| chain | " + " | ".join(AUDIO) + " | exact_match | frame_drift | budget |",
                  "|---|" + "---|" * (len(AUDIO) + 3)]
        for r in c["rows"]:
            vals = " | ".join(f"{r.get(k, float('nan')):.4g}" for k in AUDIO + ("exact_match", "frame_drift"))
            verdict = "within" if r["within_budget"] else "over: " + ", ".join(r["over_budget"])
            if r.get("unmeasurable"):
                verdict += f" ({', '.join(r['unmeasurable'])} not measurable: held to the fp32 signal budget)"
            lines.append(f"| {r['config']} | {vals} | {verdict} |")
        s = c.get("stream")
        if s:
            lines += ["", f"Streaming gate ({s['graph']} on chunks of {s['chunk']} frames, first {s['first']}, "
                          f"{s['context']} frames of context each side; measured receptive radius {s['radius']}), "
                          f"streamed vs whole over {s['items']} utterances: "
                          + ", ".join(f"{k} {s['worst'][k]:.4g}" for k in AUDIO if s["worst"].get(k) is not None)
                          + (" -- PASS" if s["passed"] else f" -- FAIL ({', '.join(s['over_budget'])})")]
        lines.append("")
    return lines


# ---- the chain stage: chained parity of the policy's choice, the chain gate, the final selection ----

LOOSENESS = ("fp32", "fp16", "int8")


def selection(graphs: dict[str, GraphPlan], records: dict) -> dict:
    """model -> host runtime -> the precision its select stage accepted."""
    return {name: {rt: records[label]["accepted"] for rt, label in gp.select.items()} for name, gp in graphs.items()}


def _runners(graphs: dict[str, GraphPlan], inputs: dict, records: dict, runtime: str, chosen: dict) -> dict:
    from voxc.targets import backend
    out = {}
    for name, gp in graphs.items():
        rung = gp.rungs.get(runtime, {}).get(chosen[name].get(runtime))
        if rung is not None:
            rec = records[rung.artifact]
            out[name] = backend(runtime).open(inputs[rung.artifact] / rec["file"], rec)
    return out


STREAM_FIRST = 16            # frames in the first streamed chunk (time to first audio)


def stream_layout(spec) -> tuple[str, str, int]:
    """(input, output, samples per frame) of a graph streamed along its sweep dim (the vocoder)."""
    x = next(t for t in spec.inputs if spec.sweep_dim in t.dims)
    y = next(t for t in spec.outputs if t.kind == "waveform")
    return x.name, y.name, spec.output_shape(y, {"batch": 1, spec.sweep_dim: 1})[-1]


def stream_check(runner, spec, inputs: list, budget: dict, chunk: int, context: int, first: int = STREAM_FIRST):
    """Worst metrics of streamed (chunks of `chunk` frames, `context` frames each side) against whole
    output over `inputs`, and the metrics over `budget`."""
    from voxc.targets import split
    x, y, hop = stream_layout(spec)
    worst: dict = {}
    if not inputs:
        return worst, [NO_ITEMS]
    for feeds in inputs:
        whole = runner.infer({x: feeds})[y]
        streamed = np.concatenate(list(split.stream(runner.infer, {x: feeds}, x, y, hop, chunk, first, context,
                                                    spec.dims[spec.sweep_dim].min)), axis=-1)
        for k, v in output_metrics("waveform", whole, streamed, spec.sample_rate).items():
            if not np.isfinite(v):      # e.g. PESQ finds no speech in the reference: not measurable there
                continue
            if k not in worst or (v > worst[k] if k in metrics.LOWER_IS_BETTER else v < worst[k]):
                worst[k] = float(v)
    return worst, [k for k, tol in budget.items() if k in worst and not metrics.passes(k, worst[k], tol)]


def stream_gate(runner, spec, inputs: list, budget: dict) -> dict:
    """Streaming the output graph (the vocoder) on chunks against running it whole, on real inputs: the
    context either side starts at the graph's measured receptive radius and grows until the streamed
    audio is within `budget` of the whole (one that never gets there records passed: false)."""
    from voxc.targets import split
    x, y, hop = stream_layout(spec)
    if not inputs:
        return {"graph": spec.name, "input": x, "output": y, "hop": hop, "chunk": 64, "first": STREAM_FIRST,
                "context": 0, "min_len": spec.dims[spec.sweep_dim].min, "radius": 0, "items": 0, "worst": {},
                "budget": budget, "over_budget": [NO_ITEMS], "passed": False,
                "reason": "no usable parity item to stream: the gate cannot pass on nothing"}
    channels = next(d for d in next(t for t in spec.inputs if t.name == x).dims if isinstance(d, int))
    radius = split.receptive_radius(runner.infer, x, y, channels, hop)
    context = max(radius, 1)
    for _ in range(6):
        chunk = max(4 * context, 64)
        worst, failed = stream_check(runner, spec, inputs, budget, chunk, context)
        if not failed:
            break
        context = int(np.ceil(context * 1.25))
    return {"graph": spec.name, "input": x, "output": y, "hop": hop, "chunk": chunk, "first": STREAM_FIRST,
            "context": context, "min_len": spec.dims[spec.sweep_dim].min, "radius": radius, "items": len(inputs),
            "worst": worst, "budget": budget, "over_budget": failed, "passed": not failed}


def measure(reference: dict, artifacts: dict, precisions: dict, configs: dict, preset: Preset) -> dict:
    """Chained parity per runtime: reference graph -> runner; artifacts and precisions: runtime -> graph ->
    runner / precision; configs: graph -> its config. The `all artifacts` row's verdict (`passed`) is the
    perceptual budget of the loosest precision in the chain and that precision's durations budget (the
    unforced chain's, as each stage alone is judged); the output graph's streaming gate is measured alongside."""
    fam = family_of(preset)
    pipe = Pipeline(fam, preset, {})
    out_graph, dur_graph = pipe.producer(fam.chain.output), pipe.producer(fam.chain.durations or "")
    result = {"runtimes": {}}
    for runtime, arts in artifacts.items():
        precs = precisions[runtime]
        loosest = max(precs.values(), key=LOOSENESS.index)
        budget = {**model_spec(out_graph, configs[out_graph]).perceptual_budget(loosest),
                  **(model_spec(dur_graph, configs[dur_graph]).budget(loosest, "durations") if dur_graph in precs else {})}
        strict = {k: v for k, v in model_spec(out_graph, configs[out_graph]).budget("fp32", fam.chain.kind).items()
                  if v is not None and k not in budget}
        c = {**chain_parity(reference, arts, preset, budget, label=runtime, fallback=strict), "precisions": precs,
             "budget_precision": loosest}
        c["passed"] = next(r["within_budget"] for r in c["rows"] if r["config"] == "all artifacts")
        result["runtimes"][runtime] = c
        if out_graph in arts:
            spec = model_spec(out_graph, configs[out_graph])
            x = next(t.name for t in spec.inputs if spec.sweep_dim in t.dims)
            apipe = Pipeline(fam, preset, arts)
            feeds = [apipe.run(fam.item_inputs(u, preset, forced=True), [x]).values[x] for u in chain_utterances(preset, 3)]
            c["stream"] = stream_gate(arts[out_graph], spec, feeds, spec.budget("fp32", fam.chain.kind))
    result["passed"] = all(c["passed"] for c in result["runtimes"].values())
    return result


def run_chains(graphs: dict[str, GraphPlan], inputs: dict, records: dict, preset: Preset, runtimes,
               chosen: dict) -> dict:
    """Chained parity of the chosen artifacts, per host runtime."""
    from voxc.models.weights import load_module
    from voxc.targets.runner import TorchRunner
    ref = {n: TorchRunner(load_module(n, gp.config, inputs[gp.weights] / "weights.safetensors"),
                          model_spec(n, gp.config)) for n, gp in graphs.items()}
    arts = {rt: _runners(graphs, inputs, records, rt, chosen) for rt in runtimes}
    precs = {rt: {n: chosen[n][rt] for n in graphs if rt in chosen[n]} for rt in runtimes}
    return measure(ref, arts, precs, {n: gp.config for n, gp in graphs.items()}, preset)


def _over(row: dict, budget: dict) -> list[tuple[str, float, float]]:
    """Budgeted metrics a chain row misses. A metric no item could measure (the reference audio is not
    speech to PESQ/STOI, as for an untrained toy voice) is recorded as unmeasurable and judges nothing."""
    skip = set(row.get("unmeasurable", ()))
    budget = {**{k: v for k, v in budget.items() if k not in skip}, **row.get("fallback_budget", {})}
    return [(k, row.get(k), tol) for k, tol in budget.items() if not metrics.passes(k, row.get(k), tol)]


def _reason(precision: str, what: str, k: str, v, tol: float, tail: str) -> str:
    op = ">" if k in metrics.LOWER_IS_BETTER else "<"
    value = f"{v:.4g}" if isinstance(v, float) else "not measured"
    return f"{precision} rejected: {what} {k} {value} {op} {tol:g} budget {tail}"


def demotions(chain: dict, graphs: dict[str, GraphPlan], records: dict, preset: Preset,
              chosen: dict | None = None) -> list[dict]:
    """The chain gate, per host runtime: a graph whose artifact, swapped alone into the all-PyTorch chain,
    moves the audio past the perceptual budget of its own precision (or the unforced chain's durations past
    its durations budget) falls back to its ladder's fallback. When no stage does so alone but the whole
    chain misses its budget, the stage not yet at its fallback that moved the failing metric most alone
    falls back. `chosen` (model -> runtime -> precision) defaults to the select stages' choice."""
    chosen = chosen or selection(graphs, records)
    out = []
    for runtime, c in chain.get("runtimes", {}).items():
        rows = {r["config"].removeprefix("only "): r for r in c["rows"] if r["config"].startswith("only ")}
        movable = {}
        for stage, row in rows.items():
            label = graphs[stage].select.get(runtime) if stage in graphs else None
            if label is None or chosen[stage].get(runtime) == records[label]["fallback"]:
                continue
            precision = chosen[stage][runtime]
            movable[stage] = (precision, records[label]["fallback"])
            spec = model_spec(stage, graphs[stage].config)
            durations = {k: v for k, v in spec.budget(precision, "durations").items() if k in row}
            over = _over(row, {**spec.perceptual_budget(precision), **durations})
            if over:
                out.append({"model": stage, "runtime": runtime, "precision": precision, "to": movable[stage][1],
                            "reason": _reason(precision, "chain", *over[0], f"with only {stage} swapped in")})
        whole = next((r for r in c["rows"] if r["config"] == "all artifacts"), None)
        if any(d["runtime"] == runtime for d in out) or whole is None or c.get("passed", True) or not movable:
            continue
        k, v, tol = _over(whole, c["budget"])[0]
        worse = (lambda r: -r.get(k, float("inf"))) if k in metrics.LOWER_IS_BETTER else (lambda r: r.get(k, float("-inf")))
        stage = min(movable, key=lambda s: worse(rows[s]))
        precision, to = movable[stage]
        out.append({"model": stage, "runtime": runtime, "precision": precision, "to": to,
                    "reason": _reason(precision, "whole chain", k, v, tol,
                                      f"({c['budget_precision']}); {stage} moved it most alone")})
    return out


def chain_stage(out, params: ChainParams, inputs: dict) -> dict:
    """Chained parity of the policy's choice; the chain gate demotes, and the chain is measured again with
    the fallbacks until nothing more falls back. Records the chain report (with the whole chain's
    verdict), the demotions and the final selection."""
    from voxc.calibration.feeds import same_data
    from voxc.compiler.graph import read_record
    graphs, preset = params.graphs, params.preset
    same_data(family_of(preset), "parity", params.parity_set)
    records = {label: read_record(path) for label, path in inputs.items()}
    chosen = selection(graphs, records)
    chain = run_chains(graphs, inputs, records, preset, params.runtimes, chosen)
    demoted: list[dict] = []
    for _ in range(len(graphs)):
        new = demotions(chain, graphs, records, preset, chosen)
        if not new:
            break
        for d in new:
            chosen[d["model"]][d["runtime"]] = d["to"]
        demoted += new
        chain = run_chains(graphs, inputs, records, preset, params.runtimes, chosen)
    chain = {**chain, **({"demotions": demoted} if demoted else {})}
    return {"chain": chain, "demotions": demoted, "selection": chosen}
