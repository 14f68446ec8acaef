"""Checkpoints: safe loading, weight-norm folding (both forms), and one clear error per mismatch."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from voxc.core.errors import VoxcError
from voxc.models.family import init_module
from voxc.models.weights import fold_weight_norm, load_into, read_checkpoint


def _conv_pair():
    torch.manual_seed(0)
    plain = nn.Conv1d(4, 6, 3)
    return plain, torch.randn(2, 4, 10)


@pytest.mark.parametrize("form", ["old", "parametrization"])
def test_weight_norm_is_folded_from_both_checkpoint_forms(form):
    conv, x = _conv_pair()
    if form == "old":
        normed = torch.nn.utils.weight_norm(nn.Conv1d(4, 6, 3))
        assert {"weight_g", "weight_v"} <= set(normed.state_dict())
    else:
        normed = torch.nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 6, 3))
        assert "parametrizations.weight.original0" in normed.state_dict()
    with torch.no_grad():
        expected = normed(x)
    folded = fold_weight_norm(normed.state_dict())
    assert set(folded) == {"weight", "bias"}
    conv.load_state_dict(folded)
    with torch.no_grad():
        assert torch.allclose(conv(x), expected, atol=1e-6)


def test_weight_normed_vocoder_checkpoint_loads_into_plain_generator(tmp_path, tiny_cfg):
    trained = init_module("vocoder", tiny_cfg)
    for m in trained.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            torch.nn.utils.parametrizations.weight_norm(m)
    mel = torch.randn(1, 80, 12)
    with torch.no_grad():
        expected = trained(mel)
    path = tmp_path / "g.pt"
    torch.save({"generator": trained.state_dict()}, path)
    plain = init_module("vocoder", {**tiny_cfg, "seed": 99})
    load_into(plain, path, "vocoder")
    with torch.no_grad():
        assert torch.allclose(plain(mel), expected, atol=1e-5)


def test_mismatched_checkpoint_names_the_keys(tmp_path, tiny_cfg):
    state = init_module("speaker_encoder", tiny_cfg).state_dict()
    state.pop("proj.bias")
    state["extra.weight"] = torch.zeros(1)
    state["proj.weight"] = torch.zeros(3, 3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(VoxcError) as err:
        load_into(init_module("speaker_encoder", tiny_cfg), path, "speaker_encoder")
    msg = str(err.value)
    assert "missing keys proj.bias" in msg and "unexpected keys extra.weight" in msg
    assert "mis-shaped proj.weight (3, 3) != (256, 32)" in msg and "\n" not in msg


def test_corrupt_and_missing_checkpoints(tmp_path):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(VoxcError, match="cannot be read safely"):
        read_checkpoint(bad)
    with pytest.raises(VoxcError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "x": Payload()}, path)
    with pytest.raises(VoxcError, match="cannot be read safely"):
        read_checkpoint(path)
    assert "pickled code ran" not in capsys.readouterr().out
