"""Crash trials (issue 15): kill -9 a build at random moments, then check what the next build ships.

    .venv/bin/python tests/crash_trials.py --trials 50 --out crash.json

Each trial removes a random part of the cache (or all of it) so the build has real work to do,
starts `voxc build`, kills the build process with SIGKILL after a random delay, and then checks:
no worker outlives it (5 s), a plain rebuild succeeds without a traceback, every cache entry verifies
(compiler/cache.py), and every shipped file matches the manifest's sha256. Prints one line per trial
and a summary; exits 1 if any trial found a corrupt or stale artifact shipped, an orphan or a traceback.
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
            "--artifacts", str(art), "--jobs", "2"]


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--target", default="onnxruntime")
    p.add_argument("--max-seconds", type=float, default=12.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="crash_trials.json")
    args = p.parse_args()
    rng = random.Random(args.seed)
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
