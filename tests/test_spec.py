"""ModelSpec: sweeps, range checks and output shapes agree with the modules, for every graph."""
import numpy as np
import pytest
import torch

from voxc.core.errors import VoxcError
from voxc.models.voxc.presets import PRESETS, preset
from voxc.models.family import family, init_module, model_spec

MODEL_NAMES = family("voxc").graph_names


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_sweep_covers_min_opt_export_beyond_twice_and_max(name, tiny_cfg):
    spec = model_spec(name, tiny_cfg)
    d = spec.dims[spec.sweep_dim]
    lengths = {n for _, n in spec.sweep()}
    assert {d.min, d.opt, d.export, d.max} <= lengths
    assert any(n > 2 * d.export for n in lengths)
    assert any(b > 1 for b, _ in spec.sweep())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_module_outputs_match_spec_shapes(name, tiny_cfg):
    spec, module = model_spec(name, tiny_cfg), init_module(name, tiny_cfg)
    for batch, length in spec.sweep():
        feeds = spec.make_inputs(batch, length, np.random.default_rng(0))
        sizes = spec.sizes_of(feeds)
        with torch.inference_mode():
            outs = module(*[torch.from_numpy(feeds[t.name]) for t in spec.inputs])
        outs = outs if isinstance(outs, tuple) else (outs,)
        assert [tuple(o.shape) for o in outs] == [spec.output_shape(t, sizes) for t in spec.outputs]


def test_shape_outside_range_is_one_clear_error(tiny_cfg):
    spec = model_spec("vocoder", tiny_cfg)
    too_long = spec.dims["frames"].max + 1
    with pytest.raises(VoxcError, match=r"frames=\d+ on input 'mel' is outside the spec's range"):
        spec.sizes_of({"mel": np.zeros((1, 80, too_long), np.float32)})
    with pytest.raises(VoxcError, match="axis 1 is 81, spec fixes it at 80"):
        spec.sizes_of({"mel": np.zeros((1, 81, 20), np.float32)})


def test_unknown_preset_and_model_name_the_choices():
    with pytest.raises(VoxcError, match="unknown preset 'huge': choose one of tiny, light, base"):
        preset("huge")
    with pytest.raises(VoxcError, match="unknown model 'vocodr'"):
        model_spec("vocodr", preset("tiny"))


def test_base_preset_is_emotivoice_scale():
    base = PRESETS["base"]
    assert (base["encoder_layers"], base["hidden"], base["heads"], base["ffn"]) == (4, 384, 8, 1536)
    assert (base["vocoder"], base["sample_rate"], base["n_mels"], base["hop"]) == ("v1", 16000, 80, 256)
    v1 = init_module("vocoder", base)
    assert 13.5e6 < sum(p.numel() for p in v1.parameters()) < 14.5e6  # HiFi-GAN v1 is 13.9 M


def test_length_regulator_expands_exactly():
    from voxc.models.voxc.acoustic import LengthRegulator
    hidden = torch.arange(3, dtype=torch.float32).reshape(1, 3, 1)
    durations = torch.tensor([[2, 1, 3]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0.0]])  # the host pads frame 7 (beyond the total of 6)
    out = LengthRegulator()(hidden, durations, mask)
    assert out.squeeze().tolist() == [0, 0, 1, 2, 2, 2, 0]
