"""`voxc report --release`: the release report, one self-contained HTML page and its JSON across every
target built (`voxc build`) or merged (`voxc report --merge`) under an artifacts folder.

It comes last in the flow: build -> parity (-> device bundle -> merge) -> bench -> release report. It
reads each built target folder (core/target.py verifies it; folders that are not targets are skipped) and, per model and
runtime, gathers the accepted precision and the rejected rungs with their reasons (manifest precision),
the worst value of every metric in the parity rows (read generically: signal and perceptual alike), the
shipped sizes, speed (bench.json in the folder, the policy's timings in artifacts/<target>.timings.json),
deferred rows and merged device results. For runtimes this host can run it speaks a few held-out
utterances with PyTorch and with the artifacts (compiler/release_listen.py) and draws their spectrograms
and each model's metrics against length (compiler/release_plots.py). Audio and plots are embedded as
base64, so the page needs nothing else. Both files are written atomically.
"""
from __future__ import annotations

import base64
import datetime
import html
import json
from pathlib import Path

from voxc.compiler import deferred, parity
from voxc.core.atomic import write_atomic
from voxc.core.errors import VoxcError
from voxc.core.target import dumps, is_target, read


def target_folders(artifacts: Path) -> list[Path]:
    if not artifacts.is_dir():
        raise VoxcError(f"{artifacts} is not a folder; pass --artifacts DIR holding built targets")
    found = sorted(p for p in artifacts.iterdir() if is_target(p))
    if not found:
        raise VoxcError(f"no built target under {artifacts} (none has a manifest and a parity report); "
                        "run `voxc build --target T` first")
    return found


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError) as exc:
        raise VoxcError(f"{path} is not readable JSON ({type(exc).__name__}); rebuild or remove it") from None


def _speed(bench: dict | None, timings: dict | None, model: str, runtime: str, precision: str) -> dict:
    out = {}
    t = ((timings or {}).get("models", {}).get(model, {}).get(runtime) or {}).get("timings", {}).get(precision)
    if t:
        out["policy_median_ms"] = round(t["median_ms"], 3)
    for r in (bench or {}).get("results", []):
        if (r["model"], r["runtime"], r["precision"], r["shape"]) == (model, runtime, precision, "opt"):
            out.update(bench_median_ms=r["median_ms"], rtf=r.get("rtf"), vs_torch_eager=r.get("vs_torch_eager"))
    return out


def target_summary(folder: Path) -> dict:
    """Everything the report says about one target folder, without audio or plots."""
    shipped = read(folder)
    manifest, rows, doc = shipped.manifest.doc, shipped.parity.results, shipped.parity.doc
    bench, timings = _json(folder / "bench.json"), _json(folder.parent / f"{folder.name}.timings.json")
    summary = parity.summarise(rows)
    models = {}
    for name, info in manifest["models"].items():
        runtimes = list(dict.fromkeys(list(info.get("precision", {})) + [a["runtime"] for a in info["artifacts"]
                                                                          if a["runtime"] != "portable"]))
        runtimes += sorted({r["runtime"] for r in rows if r["model"] == name and r["runtime"] not in runtimes})
        per = {}
        for rt in runtimes:
            sel = info.get("precision", {}).get(rt, {})
            shipped = [a for a in info["artifacts"] if a["runtime"] == rt]
            accepted = sel.get("accepted") or next((a["precision"] for a in shipped), None)
            precisions = sorted({r["precision"] for r in rows if r["model"] == name and r["runtime"] == rt})
            checks = {}
            for p in precisions:
                s = summary[f"{name}/{rt}/{p}"]
                mine = [r for r in rows if (r["model"], r["runtime"], r["precision"]) == (name, rt, p)]
                checks[p] = {"result": "fail" if not s["passed"] else "deferred" if s["deferred"] else "pass",
                             "worst": s["worst"], "rows": len(mine),
                             "deferred": sorted({r.get("reason", "") for r in mine if deferred.is_deferred(r)}),
                             "device_rows": sum(r.get("site") == "device" for r in mine)}
            per[rt] = {"accepted": accepted, "ladder": sel.get("ladder"), "fallback": sel.get("fallback"),
                       "rejected": sel.get("rejected", []), "bytes": sum(a["bytes"] for a in shipped),
                       "files": [a["path"] for a in shipped], "checks": checks,
                       "speed": _speed(bench, timings, name, rt, accepted) if accepted else {}}
        models[name] = {"parity": info.get("parity"), "weights": (info.get("weights") or {}).get("source"),
                        "reference_bytes": info["reference"]["bytes"], "runtimes": per}
    chain = {rt: {"all_artifacts": next((r for r in c["rows"] if r["config"] == "all artifacts"), None),
                  "utterances": c.get("utterances"), "stream": c.get("stream")}
             for rt, c in ((doc.get("chain") or {}).get("runtimes") or {}).items()}
    return {"target": manifest["target"], "folder": str(folder), "status": deferred.status(rows),
            "family": manifest.get("family"), "preset": manifest.get("preset"),
            "backends": manifest["profile"].get("backends"), "voxc_version": manifest.get("voxc_version"),
            "models": models, "chain": chain, "device_parity": manifest.get("device_parity", []),
            "deferred_rows": sum(deferred.is_deferred(r) for r in rows),
            "bench_chain": (bench or {}).get("chain"), "rows": rows}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def media(folder: Path, summary: dict, count: int) -> dict:
    """Plots (PNG) and A/B audio (WAV) of one target, base64; the JSON gets the per-utterance metrics."""
    from voxc.compiler import release_listen, release_plots
    plots = {}
    for name in summary["models"]:
        png = release_plots.metric_vs_length(name, [r for r in summary["rows"] if r["model"] == name])
        if png:
            plots[name] = _b64(png)
    heard = release_listen.listen(folder, read(folder).manifest.doc, count)
    utts = []
    for u in heard["utterances"]:
        utts.append({"id": u["id"], "text": u["text"], "gain": u["gain"],
                     "reference": _b64(release_listen.wav_bytes(u["reference"])),
                     "runtimes": {rt: {"wav": _b64(release_listen.wav_bytes(a["wave"])), "metrics": a["metrics"],
                                       "spectrogram": _b64(release_plots.spectrograms(
                                           u["reference"], a["wave"], f"{u['id']}: PyTorch vs {rt}"))}
                                  for rt, a in u["runtimes"].items()}})
    return {"plots": plots, "utterances": utts, "no_audio": heard["skipped"]}


# ---- HTML ------------------------------------------------------------------------------------------

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f3f3f3}.pass{color:#176b1b;font-weight:600}.fail{color:#b00020;font-weight:600}
.deferred{color:#a86400;font-weight:600}img{max-width:100%}section.target{border-top:3px solid #444;margin-top:2em}
.ab{display:flex;gap:1.5em;flex-wrap:wrap;align-items:center}small{color:#666}"""


def _e(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _status(s: str) -> str:
    return f'<span class="{_e(s)}">{_e(s.upper())}</span>'


def _table(head: list[str], body: list[list[str]], cls: str = "") -> str:
    return (f'<table class="{cls}"><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body) + "</table>")


def _decisions(t: dict) -> str:
    body = []
    for name, m in t["models"].items():
        for rt, r in m["runtimes"].items():
            rejected = "<br>".join(f"{_e(x['precision'])}: {_e(x['reason'])}" for x in r["rejected"]) or "-"
            checks = "<br>".join(f"<b>{_e(p)}</b> {_status(c['result'])} "
                                 + "; ".join(f"{_e(k)} {_e(v)}" for k, v in c["worst"].items())
                                 + (f" <i>deferred: {_e('; '.join(c['deferred']))}</i>" if c["deferred"] else "")
                                 + (f" <i>{c['device_rows']} device rows merged</i>" if c["device_rows"] else "")
                                 for p, c in r["checks"].items()) or "-"
            speed = "; ".join(f"{_e(k)} {_e(v)}" for k, v in r["speed"].items() if v is not None) or "-"
            body.append([_e(name), _e(rt), f"<b>{_e(r['accepted'] or '-')}</b>", rejected, checks,
                         f"{r['bytes'] / 1e6:.2f} MB", speed])
    return _table(["model", "runtime", "accepted", "rejected (reason)", "parity per precision: worst values",
                   "size", "speed"], body, "decisions")


def _chain(t: dict) -> str:
    if not t["chain"]:
        return "<p>No chained parity recorded.</p>"
    body = []
    for rt, c in t["chain"].items():
        row = c["all_artifacts"] or {}
        vals = "; ".join(f"{_e(k)} {_e(v)}" for k, v in row.items()
                         if k not in ("config", "within_budget", "over_budget"))
        s = c.get("stream")
        stream = "-" if not s else f"{_status('pass' if s['passed'] else 'fail')} chunk {s['chunk']}, context {s['context']}"
        body.append([_e(rt), _status("pass" if row.get("within_budget") else "fail") if row else "-", vals, stream])
    return _table(["runtime", "all artifacts", "chain metrics (text -> waveform)", "streaming gate"], body, "chain")


def _listening(t: dict, m: dict) -> str:
    parts = [f"<p>No audio for {_e(rt)}: {_e(why)}</p>" for rt, why in m["no_audio"].items()]
    for u in m["utterances"]:
        players = [f'<figure><figcaption>reference (PyTorch)</figcaption><audio controls preload="auto" '
                   f'data-role="reference" src="data:audio/wav;base64,{u["reference"]}"></audio></figure>']
        specs = []
        for rt, a in u["runtimes"].items():
            players.append(f'<figure><figcaption>artifact ({_e(rt)})</figcaption><audio controls preload="auto" '
                           f'data-role="artifact" data-runtime="{_e(rt)}" src="data:audio/wav;base64,{a["wav"]}">'
                           f'</audio><br><small>' + "; ".join(f"{_e(k)} {_e(v)}" for k, v in a["metrics"].items())
                           + "</small></figure>")
            specs.append(f'<img class="spectrogram" alt="spectrograms {_e(u["id"])} {_e(rt)}" '
                         f'src="data:image/png;base64,{a["spectrogram"]}">')
        gain = f" <small>(played at gain {u['gain']:.3g})</small>" if u["gain"] != 1.0 else ""
        parts.append(f'<div class="utterance"><h4>{_e(u["id"])}: "{_e(u["text"])}"{gain}</h4>'
                     f'<div class="ab">{"".join(players)}</div>{"".join(specs)}</div>')
    return "".join(parts) or "<p>No audio.</p>"


def _target_html(t: dict, m: dict) -> str:
    merges = "".join(f"<li>{_e(d.get('runner'))}{' (stand-in)' if d.get('stand_in') else ''}: "
                     f"{_status('pass' if d.get('passed') else 'fail')}, {_e(d.get('rows'))} rows"
                     f"{', device ' + _e(json.dumps(d['device'])) if d.get('device') else ''}</li>"
                     for d in t["device_parity"])
    bench = t.get("bench_chain")
    plots = "".join(f'<figure><img class="metric-plot" alt="{_e(n)} metrics vs length" '
                    f'src="data:image/png;base64,{png}"></figure>' for n, png in m["plots"].items())
    return (f'<section class="target" id="target-{_e(t["target"])}" data-target="{_e(t["target"])}">'
            f'<h2>{_e(t["target"])} {_status(t["status"])}</h2>'
            f'<p>family {_e(t["family"])}, preset {_e(t["preset"])}, backends {_e(", ".join(t["backends"] or []))}; '
            f'{t["deferred_rows"]} deferred rows; <small>{_e(t["folder"])}</small></p>'
            f'<h3>Decisions per model and runtime</h3>{_decisions(t)}'
            f'<h3>Chained parity</h3>{_chain(t)}'
            + (f"<p>Bench chain: PyTorch eager {_e(bench['torch_eager_ms'])} ms, voxc {_e(bench['voxc_ms'])} ms "
               f"({_e(bench['ratio'])}x), RTF {_e(bench['rtf_voxc'])}</p>" if bench else "")
            + f'<h3>Merged device results</h3><ul class="device">{merges or "<li>none</li>"}</ul>'
            f'<h3>Listening: reference vs artifact</h3><div class="listening">{_listening(t, m)}</div>'
            f'<h3>Metrics vs length</h3><div class="plots">{plots or "<p>No parity values along the length sweep here (device checks deferred or not merged).</p>"}</div>'
            "</section>")


def render(doc: dict, media_by_target: dict) -> str:
    overview = _table(["target", "status", "family", "preset", "models", "deferred rows", "device merges"],
                      [[f'<a href="#target-{_e(t["target"])}">{_e(t["target"])}</a>', _status(t["status"]),
                        _e(t["family"]), _e(t["preset"]), _e(len(t["models"])), _e(t["deferred_rows"]),
                        _e(len(t["device_parity"]))] for t in doc["targets"]], "overview")
    body = "".join(_target_html(t, media_by_target[t["target"]]) for t in doc["targets"])
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>voxc release report</title>"
            '<link rel="icon" href="data:,">'
            f"<style>{CSS}</style></head><body><h1>voxc release report</h1>"
            f"<p>Generated {_e(doc['generated'])} from {_e(doc['artifacts'])}.</p>{overview}{body}</body></html>\n")


def release(artifacts: Path, out: Path | None = None, utterances: int = 2) -> tuple[Path, dict]:
    """Writes the page (default artifacts/release.html) and its JSON beside it; returns (page, JSON doc)."""
    artifacts = Path(artifacts)
    folders = target_folders(artifacts)
    out = Path(out) if out else artifacts / "release.html"
    if out.suffix != ".html":
        raise VoxcError(f"--out must name an .html file, got {out}")
    if not out.parent.is_dir():
        raise VoxcError(f"cannot write {out}: {out.parent} is not a folder")
    targets, media_by_target = [], {}
    for folder in folders:
        t = target_summary(folder)
        m = media(folder, t, utterances)
        media_by_target[t["target"]] = m
        t.pop("rows")
        t["listening"] = {"utterances": [{"id": u["id"], "text": u["text"], "gain": u["gain"],
                                          "metrics": {rt: a["metrics"] for rt, a in u["runtimes"].items()}}
                                         for u in m["utterances"]], "no_audio": m["no_audio"]}
        targets.append(t)
    doc = {"generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "artifacts": str(artifacts), "targets": targets}
    write_atomic(out.with_suffix(".json"), dumps(doc))
    write_atomic(out, render(doc, media_by_target))
    return out, doc
