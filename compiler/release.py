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
from voxc.core.target import dumps, is_target, portable, read


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
    """Speed of the accepted precision: its speed-up over fp32 in the policy's paired timing (the measure the
    decision was taken on), and the bench's real-time factor and ratio to PyTorch eager where bench.json has them."""
    out = {}
    per = ((timings or {}).get("models", {}).get(model, {}).get(runtime) or {}).get("timings", {})
    t, base = per.get(precision), per.get("fp32")
    if t and base and t.get("median_ms"):
        out["vs_fp32"] = round(base["median_ms"] / t["median_ms"], 3)
    for r in (bench or {}).get("results", []):
        if (r["model"], r["runtime"], r["precision"], r["shape"]) == (model, runtime, precision, "opt"):
            out.update(rtf=r.get("rtf"), vs_torch_eager=r.get("vs_torch_eager"))
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
                                                                          if not portable(a)]))
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
                             "worst": s["worst"], "budget": s.get("budget", {}), "rows": len(mine),
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
    tools: dict = {}
    for info in manifest["models"].values():
        tools.update(info.get("tools") or {})
    bundle = manifest.get("bundle") or None
    return {"target": manifest["target"], "folder": str(folder), "status": deferred.status(rows),
            "tools": dict(sorted(tools.items())),
            "bundle": {k: bundle.get(k) for k in ("id", "tarball", "tarball_sha256", "runtime")} if bundle else None,
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
                     "reference": _b64(release_listen.wav_bytes(u["reference"], heard["sample_rate"])),
                     "runtimes": {rt: {"wav": _b64(release_listen.wav_bytes(a["wave"], heard["sample_rate"])), "metrics": a["metrics"],
                                       "spectrogram": _b64(release_plots.spectrograms(
                                           u["reference"], a["wave"], f"{u['id']}: PyTorch vs {rt}"))}
                                  for rt, a in u["runtimes"].items()}})
    return {"plots": plots, "utterances": utts, "no_audio": heard["skipped"]}


# ---- HTML ------------------------------------------------------------------------------------------

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f3f3f3}.pass{color:#176b1b;font-weight:600}.fail{color:#b00020;font-weight:600}
.deferred{color:#a86400;font-weight:600}.rejected{color:#555}img{max-width:100%}
section.target{border-top:3px solid #444;margin-top:2em}header.release{border:2px solid #444;padding:.5em 1em;margin-bottom:1em}
.verdict{font-size:1.4em}.regression{color:#b00020}.next{background:#fff6e0;padding:.4em .8em}
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


def _reason(precision: str, reason: str) -> str:
    """A rejection reason said once: the policy writes "<p> rejected: why", the table already names <p>."""
    for prefix in (f"{precision} rejected: ", f"{precision}: "):
        while reason.startswith(prefix):
            reason = reason[len(prefix):]
    return reason


def _check_cell(p: str, c: dict, accepted: str | None) -> str:
    """One precision's parity: worst values beside their budgets; a rejected rung reads neutral, not red."""
    result = c["result"]
    if result == "fail" and p != accepted:
        label = '<span class="rejected">rejected rung</span>'
    else:
        label = _status(result)
    budgets = c.get("budget") or {}
    worst = "; ".join(f"{_e(k)} {_e(v)}" + (f" <small>(budget {_e(budgets[k])})</small>" if k in budgets else "")
                      for k, v in c["worst"].items())
    return (f"<b>{_e(p)}</b> {label} {worst}"
            + (f" <i>deferred: {_e('; '.join(c['deferred']))}</i>" if c["deferred"] else "")
            + (f" <i>{c['device_rows']} device rows merged</i>" if c["device_rows"] else ""))


def _speed_cell(speed: dict) -> str:
    parts = []
    if speed.get("vs_fp32") is not None:
        parts.append(f"{speed['vs_fp32']:.2f}x fp32")
    if speed.get("rtf") is not None:
        parts.append(f"RTF {speed['rtf']:.3g}")
    if speed.get("vs_torch_eager") is not None:
        parts.append(f"{speed['vs_torch_eager']:.2f}x PyTorch eager")
    return _e(", ".join(parts)) if parts else "-"


def _decisions(t: dict) -> str:
    body = []
    for name, m in t["models"].items():
        for rt, r in m["runtimes"].items():
            rejected = "<br>".join(f'<span class="rejected">{_e(x["precision"])}: '
                                   f'{_e(_reason(x["precision"], x["reason"]))}</span>' for x in r["rejected"]) or "-"
            checks = "<br>".join(_check_cell(p, c, r["accepted"]) for p, c in r["checks"].items()) or "-"
            size = f"{r['bytes'] / 1e6:.2f} MB" if r["bytes"] else "not built here (device)"
            body.append([_e(name), _e(rt), f"<b>{_e(r['accepted'] or '-')}</b>", rejected, checks,
                         size, _speed_cell(r["speed"])])
    note = ("<p><small>Speed is the policy's paired timing at the opt shape on the build host, single thread. "
            "On a small graph a runtime's absolute times are dominated by its per-call overhead and can read many "
            "times another's; compare each runtime's ratio to its own fp32.</small></p>")
    return _table(["model", "runtime", "accepted", "rejected (reason)", "parity per precision: worst (budget)",
                   "size", "speed"], body, "decisions") + note


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
    nxt = ""
    if t["status"] == "deferred":
        tarball = (t.get("bundle") or {}).get("tarball") or "the bundle tarball"
        nxt = (f'<p class="next">Next step: copy {_e(tarball)} from {_e(t["folder"])} to the device, run '
               f'<code>python3 verify.py</code> there, then <code>voxc report --target {_e(t["target"])} --merge '
               f'parity.json</code> here and write this report again.</p>')
    return (f'<section class="target" id="target-{_e(t["target"])}" data-target="{_e(t["target"])}">'
            f'<h2>{_e(t["target"])} {_status(t["status"])}</h2>{nxt}'
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


def _header(doc: dict) -> str:
    """Who built what, where, with which tools, and the one verdict a release manager signs."""
    prov = doc["provenance"]
    verdict = doc["verdict"]
    words = {"pass": "SHIP: every target passed its gates",
             "deferred": "HOLD: host gates passed; device results still to merge",
             "fail": "DO NOT SHIP: a target failed its gates or regressed against the baseline"}[verdict]
    bundles = "".join(f"<li>{_e(t['target'])}: bundle {_e(t['bundle']['id'])}, {_e(t['bundle']['tarball'])} "
                      f"sha256 {_e(t['bundle']['tarball_sha256'])}</li>" for t in doc["targets"] if t.get("bundle"))
    tools = ", ".join(f"{_e(k)} {_e(v)}" for k, v in prov["tools"].items())
    return (f'<header class="release" id="release-header"><p class="verdict" data-verdict="{_e(verdict)}">'
            f'Verdict: {_status(verdict)} <span>{_e(words)}</span></p>'
            f"<p>voxc {_e(prov['voxc_version'])}, commit <code>{_e(prov['commit'])}</code>; built on "
            f"{_e(prov['host']['name'])} ({_e(prov['host']['platform'])}, {_e(prov['host']['cpus'])} CPUs, "
            f"Python {_e(prov['host']['python'])})</p><p><small>Tools: {tools or '-'}</small></p>"
            f"<ul class=\"bundles\">{bundles or '<li>no device bundles</li>'}</ul></header>")


def _gate_html(gate: dict | None) -> str:
    if gate is None:
        return "<p>No baseline given (<code>--baseline PREV</code> compares with the previous release).</p>"
    tol = ", ".join(f"{k} {v:.0%}" for k, v in gate["tolerances"].items())
    items = "".join(f'<li class="{"regression" if line.startswith(("REGRESSION", "FAIL")) else ""}">{_e(line)}</li>'
                    for line in gate["lines"])
    return (f'<div id="baseline-diff"><p>Against {_e(gate["baseline"])}: {_status("pass" if gate["passed"] else "fail")} '
            f"<small>(tolerances: {_e(tol)})</small></p><ul>{items or '<li>no change</li>'}</ul></div>")


def render(doc: dict, media_by_target: dict) -> str:
    overview = _table(["target", "status", "family", "preset", "models", "deferred rows", "device merges"],
                      [[f'<a href="#target-{_e(t["target"])}">{_e(t["target"])}</a>', _status(t["status"]),
                        _e(t["family"]), _e(t["preset"]), _e(len(t["models"])), _e(t["deferred_rows"]),
                        _e(len(t["device_parity"]))] for t in doc["targets"]], "overview")
    body = "".join(_target_html(t, media_by_target[t["target"]]) for t in doc["targets"])
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>voxc release report</title>"
            '<link rel="icon" href="data:,">'
            f"<style>{CSS}</style></head><body><h1>voxc release report</h1>{_header(doc)}"
            f"<p>Generated {_e(doc['generated'])} from {_e(doc['artifacts'])}.</p>{overview}"
            f"<h2>Compared with the previous release</h2>{_gate_html(doc.get('gate'))}{body}</body></html>\n")


def verdict(targets: list[dict], gate: dict | None) -> str:
    """fail when a target failed or the baseline gate found a regression; deferred while device results are
    missing; pass otherwise."""
    statuses = {t["status"] for t in targets}
    if "fail" in statuses or (gate is not None and not gate["passed"]):
        return "fail"
    return "deferred" if "deferred" in statuses else "pass"


def release(artifacts: Path, out: Path | None = None, utterances: int = 2,
            baseline: Path | None = None) -> tuple[Path, dict]:
    """Writes the page (default artifacts/release.html) and its JSON beside it; returns (page, JSON doc).
    With a baseline (the previous release's release.json) the doc carries the gate's diff under "gate"."""
    from voxc.compiler import release_gate
    artifacts = Path(artifacts)
    folders = target_folders(artifacts)
    out = Path(out) if out else artifacts / "release.html"
    if out.suffix != ".html":
        raise VoxcError(f"--out must name an .html file, got {out}")
    if not out.parent.is_dir():
        raise VoxcError(f"cannot write {out}: {out.parent} is not a folder")
    base_doc = release_gate.load_baseline(baseline) if baseline is not None else None
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
           "artifacts": str(artifacts), "provenance": provenance(targets), "targets": targets}
    if base_doc is not None:
        diff = release_gate.compare(base_doc, doc)
        doc["gate"] = {**diff, "baseline": str(baseline), "lines": release_gate.lines(diff)}
    doc["verdict"] = verdict(targets, doc.get("gate"))
    write_atomic(out.with_suffix(".json"), dumps(doc))
    write_atomic(out, render(doc, media_by_target))
    return out, doc


def provenance(targets: list[dict]) -> dict:
    """voxc version, source commit, build host and the tools the targets were built with."""
    import os
    import platform
    import subprocess
    import sys
    from voxc.compiler.report import VOXC_VERSION
    commit = os.environ.get("VOXC_COMMIT") or os.environ.get("GITHUB_SHA") or os.environ.get("CI_COMMIT_SHA")
    if not commit:
        src = Path(__file__).resolve().parent
        try:
            head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                                   capture_output=True, text=True, timeout=10)
            if head.returncode == 0:
                commit = head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
        except (OSError, subprocess.SubprocessError):
            pass
    tools: dict = {}
    for t in targets:
        tools.update(t.get("tools") or {})
    return {"voxc_version": VOXC_VERSION, "commit": commit or "unknown (not a git checkout; set VOXC_COMMIT)",
            "host": {"name": platform.node(), "platform": platform.platform(), "machine": platform.machine(),
                     "cpus": os.cpu_count(), "python": platform.python_version()},
            "tools": dict(sorted(tools.items())), "argv": " ".join(sys.argv[1:])}
