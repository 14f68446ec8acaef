"""Farm builds (compiler/matrix.py): a malformed matrix file is one line, and merged plans share stages."""
from __future__ import annotations

import pytest

from voxc.cli import main
from voxc.compiler import build as b, matrix
from voxc.compiler.graph import BuildGraph
from voxc.targets import profiles


@pytest.mark.parametrize("text,msg", [
    ("voice = 3", "needs one or more [[voice]] tables"),
    ("[[voice]]\nname = 'a'\n", "needs targets"),
    ("[[voice]]\nname = 'a'\ntargets = ['cpu']\ncolour = 'red'\n", "unknown key(s) colour"),
    ("[[voice]]\nname = 'a b'\ntargets = ['cpu']\n", "unique name"),
    ("[[voice\n", "is not valid TOML")])
def test_a_malformed_matrix_file_is_one_line_and_exit_2(tmp_path, capsys, text, msg):
    path = tmp_path / "voices.toml"
    path.write_text(text)
    assert main(["build", "--matrix", str(path), "--artifacts", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err


def test_targets_of_a_voice_share_their_common_stages(tmp_path):
    path = tmp_path / "voices.toml"
    path.write_text("[defaults]\npreset = 'tiny'\nseeded = true\nmodels = ['vocoder']\n"
                    "targets = ['onnxruntime', 'jetson', 'x86-cuda']\n[[voice]]\nname = 'a'\n"
                    "[[voice]]\nname = 'b'\nset = { seed = 7 }\n")
    plans = [(v["name"], r.target, b.plan(r, profiles.load(r.target))[0])
             for v in matrix.load(path) for r in matrix.requests(v, tmp_path, 1, {})]
    g = BuildGraph(tmp_path / "cache")
    renames, planned = matrix.merge(g, plans)
    assert planned == sum(len(p[2].stages) for p in plans) == 56 and len(g.stages) == 40
    exports = {r["vocoder/export"] for r in renames}
    assert exports == {"a/vocoder/export", "b/vocoder/export"}       # one export per voice feeds its 3 targets
    assert "a/jetson/assemble" in g.stages and "a/x86-cuda/assemble" in g.stages
