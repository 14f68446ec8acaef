"""A/B audio of the release report (compiler/release.py): the same held-out utterances spoken by the
all-PyTorch pipeline (reference.safetensors of every graph) and by the target's accepted artifacts of one
runtime, with the same inputs and forced timing, as chained parity builds them (compiler/chain.py).
Runtimes this host cannot run (Core ML off macOS, TensorRT without CUDA) get the reason instead.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from voxc.compiler.chain import chain_utterances, output_metrics, output_rate
from voxc.models.family import family_of, model_spec
from voxc.models.pipeline import Pipeline
from voxc.models.spec import preset_dim


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV of a float wave in [-1, 1] at the family's output rate."""
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wave, np.float32).reshape(-1), -1.0, 1.0), sample_rate, format="WAV",
             subtype="PCM_16")
    return buf.getvalue()


def reference_pipeline(folder: Path, manifest: dict) -> Pipeline:
    from voxc.models.weights import load_module
    from voxc.targets.runner import TorchRunner
    preset = manifest["preset_config"]
    refs = {n: TorchRunner(load_module(n, i["config"], folder / n / "reference.safetensors"), model_spec(n, i["config"]))
            for n, i in manifest["models"].items()}
    return Pipeline(family_of(preset), preset, refs)


def utterance_inputs(ref: Pipeline, preset: dict, count: int) -> list[tuple[object, dict]]:
    """(utterance, forced inputs) for `count` held-out utterances whose free-run length fits the graphs:
    the item's aligned durations plus the values the family pins from the reference's free run."""
    fam, out = family_of(preset), []
    check = fam.chain
    want = list(dict.fromkeys([n for n in (check.durations, check.frames) if n] + list(check.pin.values())))
    for u in chain_utterances(preset, 4 * count):
        free = ref.run(fam.item_inputs(u, preset), want).values if want else {}
        if check.frames and "frames" in preset["dims"] and int(free[check.frames]) > preset_dim(preset, "frames").max:
            continue
        out.append((u, {**fam.item_inputs(u, preset, forced=True),
                        **{k: np.asarray(free[v]).reshape(-1) for k, v in check.pin.items()}}))
        if len(out) == count:
            break
    return out


def runnable(manifest: dict) -> tuple[list[str], dict[str, str]]:
    """The target's runtimes this host runs, and why each other one cannot run here."""
    from voxc.core.target import portable
    from voxc.targets import backend
    runtimes = list(dict.fromkeys(rt for i in manifest["models"].values() for rt in i.get("precision", {})))
    runtimes += [a["runtime"] for i in manifest["models"].values() for a in i["artifacts"]
                 if a["runtime"] not in runtimes and not portable(a)]
    ok, why = [], {}
    for rt in dict.fromkeys(runtimes):
        reason = backend(rt).unavailable()
        if reason:
            why[rt] = reason
        else:
            ok.append(rt)
    return ok, why


def listen(folder: Path, manifest: dict, count: int = 2) -> dict:
    """{"utterances": [{id, text, reference: wave, runtimes: {rt: {wave, metrics}}}], "skipped": {rt: why},
    "sample_rate": the waves' rate (the chained output's spec)}.
    Waves are float32 arrays; a common gain keeps every clip of an utterance within [-1, 1]."""
    from voxc.compiler.shipped import pipeline
    from voxc.core.target import read
    preset = manifest["preset_config"]
    fam = family_of(preset)
    ok, why = runnable(manifest)
    if fam.chain is None or fam.chain.kind != "waveform":
        return {"utterances": [], "skipped": {rt: f"family {fam.name} has no waveform output" for rt in ok} | why}
    if not ok:
        return {"utterances": [], "skipped": why}
    target = read(folder)
    ref = reference_pipeline(folder, manifest)
    pipes = {rt: pipeline(target.folder, target.manifest, rt) for rt in ok}
    out = fam.chain.output
    rate = output_rate(preset)
    utts = []
    for u, inputs in utterance_inputs(ref, preset, count):
        r = np.asarray(ref.run(inputs, [out]).values[out], np.float32).reshape(-1)
        arts = {rt: np.asarray(p.run(inputs, [out]).values[out], np.float32).reshape(-1) for rt, p in pipes.items()}
        peak = max([float(np.abs(r).max())] + [float(np.abs(w).max()) for w in arts.values()] + [1e-9])
        gain = 1.0 if peak <= 1.0 else 0.99 / peak
        runtimes = {rt: {"wave": w * gain, "metrics": {k: float(v) for k, v in
                                                       output_metrics("waveform", r[None, None], w[None, None], rate).items()}}
                    for rt, w in arts.items()}
        utts.append({"id": u.utt_id, "text": u.text, "gain": gain, "reference": r * gain, "runtimes": runtimes})
    return {"utterances": utts, "skipped": why, "sample_rate": rate}
