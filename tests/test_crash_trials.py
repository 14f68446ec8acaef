"""Kills aimed at stage kinds (tests/crash_trials.py, compiler/aimed_kill.py), a few per run of the
suite: one SIGKILL of the build inside export, artifact, parity and assemble stages and one of the worker
running a stage (a chain kill reruns the whole chain: it is in the full set only), on a copy of the session's tiny cpu build. After each, the
next build ships the clean build's target byte for byte, every cache entry verifies and no worker is
left. The full set (20+ kills) runs from the command line: `python tests/crash_trials.py --aimed 4`."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import crash_trials  # noqa: E402

pytestmark = pytest.mark.slow

AIMS = [  # (stage label, seconds into the stage, whom); every stage named runs for several seconds here
    ("vocoder/export", 2.0, "build"),
    ("vocoder/onnxruntime-int8", 1.0, "build"),
    ("vocoder/onnxruntime-fp32/parity", 1.0, "build"),
    ("target/assemble", 0.0, "build"),
    ("acoustic_encoder/export", 2.0, "worker"),
]


@pytest.fixture(scope="module")
def trial_cache(tiny_build, tmp_path_factory):
    """A private artifacts folder seeded with the session's stage cache, and its clean target (a no-op build
    there: every stage cached) as the reference, whatever other tests do to the session's folders."""
    import subprocess
    art = tmp_path_factory.mktemp("aimed")
    shutil.copytree(tiny_build / "cache", art / "cache", symlinks=True)
    args = argparse.Namespace(preset="tiny", target="cpu", margin=None)
    clean = subprocess.run(crash_trials._build_cmd(art, args), capture_output=True, text=True, timeout=1800)
    assert clean.returncode == 0, clean.stdout[-2000:] + clean.stderr[-2000:]
    return art, args, crash_trials.stage_keys(art, args), crash_trials.folder_hashes(art / "cpu")


@pytest.mark.parametrize("label, delay, whom", AIMS, ids=[f"{w}-kill-in-{lab}" for lab, _, w in AIMS])
def test_a_kill_inside_a_stage_never_changes_what_the_next_build_ships(trial_cache, label, delay, whom):
    art, args, keys, reference = trial_cache
    kind, key = keys[label]
    row = crash_trials.aimed_trial(0, art, args, label, kind, key, delay, whom, reference)
    assert row["fired"], "the kill did not land inside the stage"
    assert not crash_trials.trial_failed(row), json.dumps(row)
