"""Crash trials (issue 15): kill -9 a build, then check what the next build ships.

    .venv/bin/python tests/crash_trials.py --trials 50 --out crash.json          # at random wall times
    .venv/bin/python tests/crash_trials.py --aimed 4 --out crash-aimed.json      # aimed at stage kinds

Random trials remove a random part of the cache (or all of it) so the build has real work to do,
start `voxc build`, kill the build process with SIGKILL after a random delay, and then check: no worker
outlives it (5 s), a plain rebuild succeeds without a traceback, every cache entry verifies
(compiler/cache.py), and every shipped file matches the manifest's sha256.

Aimed trials (--aimed N) first make a clean build (the reference target and each stage's duration),
then, N times per stage kind (export, artifact, parity, chain, assemble), remove one stage of that kind
from the cache and kill the build while that stage runs: compiler/aimed_kill.py fires a SIGKILL at the
build process a random fraction into the stage's measured duration. N more trials kill the *worker*
running a stage instead: the build itself must survive (the stage runs again in a fresh worker) and
exit 0. After every trial a plain rebuild must pass and ship a target byte-identical to the clean
build's (no half-written cache entry trusted), with every cache entry intact and no worker left.
Prints one line per trial and a summary; exits 1 if any trial found a corrupt or stale artifact
shipped, an orphan or a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from voxc.compiler import cache
from voxc.core.hashing import sha256_path


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _build_cmd(art: Path, args) -> list[str]:
    return [sys.executable, "-m", "voxc.cli", "build", "--preset", args.preset, "--target", args.target,
            "--artifacts", str(art), "--jobs", "2"] + (["--margin", str(args.margin)] if args.margin is not None else [])


def trial(i: int, art: Path, args, rng: random.Random) -> dict:
    entries = [p for p in (art / "cache").glob("*") if p.is_dir() and not p.name.startswith(".")]
    wipe = rng.random() < 0.3
    for p in entries if wipe else rng.sample(entries, k=len(entries) // 2):
        shutil.rmtree(p, ignore_errors=True)
    # a build with part of the cache left is short: kill it within the time it needs
    delay = rng.uniform(0.3, args.max_seconds if wipe else args.max_seconds / 3)
    proc = subprocess.Popen(_build_cmd(art, args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers: set[int] = set()
    t0 = time.time()
    while time.time() - t0 < delay and proc.poll() is None:
        workers |= set(_children(proc.pid))
        time.sleep(0.05)
    finished = proc.poll() is not None
    if not finished:
        os.kill(proc.pid, signal.SIGKILL)
    out = proc.communicate()[0]
    stages_done = out.count("\n[")
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    orphans = [w for w in workers if _alive(w)]
    for w in orphans:
        os.kill(w, signal.SIGKILL)
    res = subprocess.run(_build_cmd(art, args), capture_output=True, text=True, timeout=1200)
    text = res.stdout + res.stderr
    corrupt_found = text.count("is corrupt")
    bad_entries = [p.name for p in (art / "cache").glob("*") if p.is_dir() and not p.name.startswith(".")
                   and cache.problem(p) is not None]
    manifest = json.loads((art / args.target / "manifest.json").read_text()) if res.returncode == 0 else {"models": {}}
    shipped_bad = [f["path"] for info in manifest["models"].values() for f in info["artifacts"] + [info["reference"]]
                   if sha256_path(art / args.target / f["path"]) != f["sha256"]]
    row = {"trial": i, "wiped": wipe, "kill_after_s": round(delay, 2), "finished_before_kill": finished,
           "stages_done_at_kill": stages_done, "orphans": len(orphans), "rebuild_rc": res.returncode,
           "corrupt_entries_reported": corrupt_found, "bad_entries_after": len(bad_entries),
           "shipped_mismatches": len(shipped_bad), "tracebacks": int("Traceback" in text or "Traceback" in out),
           "parity_pass": "parity PASS" in res.stdout}
    print(json.dumps(row), flush=True)
    return row


# ---- aimed trials: kills inside a chosen stage kind ---------------------------------------------------

KINDS = {"export": "export", "artifact": "artifact", "parity": "parity_check", "chain": "chain_stage",
         "assemble": "target_stage"}


def folder_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_path(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def durations(log: str) -> dict[str, float]:
    """label -> seconds, from a build's progress lines ('[ 5/56] vocoder/export   17.4s')."""
    out = {}
    for line in log.splitlines():
        parts = line.split("]", 1)[-1].split()
        if line.startswith("[") and len(parts) == 2 and parts[1].endswith("s"):
            out[parts[0]] = float(parts[1][:-1])
    return out


def stage_keys(art: Path, args) -> dict[str, tuple[str, str]]:
    """label -> (stage kind, cache key) of every stage of the build `_build_cmd` runs, read off its warm
    cache with the build graph's own key function."""
    from voxc.api import build_request
    from voxc.compiler.build import plan
    from voxc.compiler.graph import Result, read_record
    from voxc.targets import profiles
    req = build_request(args.target, preset=args.preset, artifacts=art, jobs=2, margin=args.margin)
    g, _ = plan(req, profiles.load(args.target))
    done, out = {}, {}
    pending = list(g.stages.values())
    while pending:
        for stage in [s for s in pending if all(d.label in done for d in s.deps())]:
            key = g.key(stage, done)
            done[stage.label] = Result(stage.label, key, art / "cache" / key, read_record(art / "cache" / key), True, 0.0)
            out[stage.label] = (stage.name, key)
            pending.remove(stage)
    return out


def aimed_trial(i: int, art: Path, args, label: str, kind: str, key: str, delay: float, whom: str,
                reference: dict[str, str]) -> dict:
    """Remove one stage's entry, kill the build (or the stage's worker) `delay` s into that stage, rebuild."""
    shutil.rmtree(art / "cache" / key, ignore_errors=True)
    marker = art / f".aimed-{i}"
    env = {**os.environ, "VOXC_AIMED_KILL": f"{kind}:{delay:.2f}:{whom}:{marker}"}
    t0 = time.time()
    proc = subprocess.Popen(_build_cmd(art, args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    workers: set[int] = set()
    while proc.poll() is None:
        workers |= set(_children(proc.pid))
        time.sleep(0.05)
    out = proc.communicate()[0]
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    orphans = [w for w in workers if _alive(w)]
    for w in orphans:
        os.kill(w, signal.SIGKILL)
    fired = marker.exists() and marker.read_text() == "fired"
    marker.unlink(missing_ok=True)
    res = subprocess.run(_build_cmd(art, args), capture_output=True, text=True, timeout=1800)
    text = res.stdout + res.stderr
    shipped = folder_hashes(art / args.target) if res.returncode == 0 else {}
    bad_entries = [p.name for p in (art / "cache").glob("*") if p.is_dir() and not p.name.startswith(".")
                   and cache.problem(p) is not None]
    row = {"trial": i, "kind": kind, "stage": label, "whom": whom, "kill_after_s": round(delay, 2),
           "fired": fired, "killed_rc": proc.returncode, "seconds": round(time.time() - t0, 1),
           "build_survived_worker_kill": whom == "worker" and proc.returncode == 0 and "worker process died" in out,
           "orphans": len(orphans), "rebuild_rc": res.returncode,
           "rebuilt_stages": sum(line.startswith("[") and not line.endswith("cached") for line in res.stdout.splitlines()),
           "bad_entries_after": len(bad_entries), "tracebacks": int("Traceback" in text or "Traceback" in out),
           "temporaries_left": len(list((art / "cache").glob(".tmp-*"))),
           "same_target_as_clean_build": shipped == reference,
           "differing_files": sorted(k for k in set(shipped) | set(reference)
                                     if shipped.get(k) != reference.get(k))[:5]}
    print(json.dumps(row), flush=True)
    return row


def trial_failed(row: dict) -> bool:
    """What no trial may show: a worker left, a damaged entry, a traceback, a failed rebuild, another target,
    a worker kill that took the build down, or a kill that never landed inside the stage."""
    return bool(row["orphans"] or row["bad_entries_after"] or row["tracebacks"] or row["rebuild_rc"] != 0
                or row.get("temporaries_left")
                or not row["same_target_as_clean_build"] or not row["fired"]
                or (row["whom"] == "build" and row["killed_rc"] != -signal.SIGKILL)
                or (row["whom"] == "worker" and not row["build_survived_worker_kill"]))


def aimed(args, rng: random.Random) -> int:
    if args.reuse:                   # a clean build made by an earlier run (its log beside its cache)
        art = Path(args.reuse)
    else:
        art = Path(tempfile.mkdtemp(prefix="voxc-aimed-"))
        clean = subprocess.run(_build_cmd(art, args), capture_output=True, text=True, check=True, timeout=3600)
        (art / "clean-build.log").write_text(clean.stdout)
    took = durations((art / "clean-build.log").read_text())
    reference = folder_hashes(art / args.target)
    keys = stage_keys(art, args)
    plans = []
    for name, kind in KINDS.items():
        labels = [lab for lab, (k, _) in keys.items() if k == kind]
        long = [lab for lab in labels if took.get(lab, 0) >= args.min_stage_seconds] or labels
        for n in range(args.aimed):
            plans.append((rng.choice(long), kind, "build"))
    runnable = [lab for lab, (k, _) in keys.items() if k in KINDS.values() and took.get(lab, 0) >= args.min_stage_seconds]
    for label in [rng.choice(runnable) for _ in range(args.aimed)]:
        plans.append((label, keys[label][0], "worker"))
    rows = []
    for i, (label, kind, whom) in enumerate(plans):
        delay = rng.uniform(*args.fraction) * took.get(label, 0.0)
        rows.append(aimed_trial(i, art, args, label, kind, keys[label][1], delay, whom, reference))
    summary = {"trials": len(rows), "clean_build_s": sum(took.values()),
               **{f"kills_in_{name}": sum(r["kind"] == kind and r["whom"] == "build" and r["fired"] for r in rows)
                  for name, kind in KINDS.items()},
               "worker_kills": sum(r["whom"] == "worker" and r["fired"] for r in rows),
               "worker_kills_survived": sum(r["build_survived_worker_kill"] for r in rows),
               "rebuilds_identical": sum(r["same_target_as_clean_build"] for r in rows),
               "failed": sum(trial_failed(r) for r in rows)}
    Path(args.out).write_text(json.dumps({"summary": summary, "trials": rows}, indent=1))
    print(json.dumps(summary))
    if not args.reuse:
        shutil.rmtree(art, ignore_errors=True)
    return 1 if summary["failed"] else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--aimed", type=int, default=0,
                   help="aimed trials: this many build kills per stage kind, and as many worker kills")
    p.add_argument("--reuse", metavar="DIR", help="aimed: the artifacts folder of an earlier run's clean build "
                                                    "(kept when a run stops early) instead of a new one")
    p.add_argument("--fraction", type=lambda v: tuple(float(x) for x in v.split(",")), default=(0.1, 0.8),
                   metavar="LOW,HIGH", help="aimed: kill this fraction into the stage's clean-build duration (lower it "
                                            "when the clean build ran on a busier machine than the trials)")
    p.add_argument("--min-stage-seconds", type=float, default=1.0, help="aimed: prefer stages at least this long")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--target", default="onnxruntime")
    p.add_argument("--margin", type=float, default=10.0,
                   help="the build's speed margin (10: no rung clears it, so re-timed rungs cannot flip a decision)")
    p.add_argument("--max-seconds", type=float, default=12.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="crash_trials.json")
    args = p.parse_args()
    rng = random.Random(args.seed)
    if args.aimed:
        return aimed(args, rng)
    art = Path(tempfile.mkdtemp(prefix="voxc-crash-"))
    subprocess.run(_build_cmd(art, args), capture_output=True, text=True, check=True, timeout=1200)
    rows = [trial(i, art, args, rng) for i in range(args.trials)]
    summary = {"trials": len(rows), "killed_mid_build": sum(not r["finished_before_kill"] for r in rows),
               "kill_after_s": [min(r["kill_after_s"] for r in rows), max(r["kill_after_s"] for r in rows)],
               "stages_done_at_kill": [min(r["stages_done_at_kill"] for r in rows),
                                       max(r["stages_done_at_kill"] for r in rows)],
               **{k: sum(r[k] for r in rows) for k in ("orphans", "corrupt_entries_reported", "bad_entries_after",
                                                       "shipped_mismatches", "tracebacks")},
               "rebuilds_passed": sum(r["rebuild_rc"] == 0 and r["parity_pass"] for r in rows)}
    Path(args.out).write_text(json.dumps({"summary": summary, "trials": rows}, indent=1))
    print(json.dumps(summary))
    shutil.rmtree(art, ignore_errors=True)
    bad = summary["orphans"] + summary["bad_entries_after"] + summary["shipped_mismatches"] + summary["tracebacks"]
    return 1 if bad or summary["rebuilds_passed"] != len(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
