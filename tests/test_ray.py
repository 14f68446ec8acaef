"""The Ray executor's cases (tests/ray_cases.py) on a local multi-node cluster, in a pytest process of
their own: a Ray driver's core worker ends its process when a raylet it talks to dies (the cases kill
nodes on purpose), which would take the whole test session with it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
HERE = Path(__file__).resolve().parent


def test_ray_cluster_cases():
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "ray_cases.py")],
                         capture_output=True, text=True, timeout=1200, cwd=HERE.parent)
    tail = res.stdout[-3000:] + res.stderr[-1500:]
    assert res.returncode == 0, tail
    assert " passed" in res.stdout and " failed" not in res.stdout, tail
