"""The parity gate bites: damaged artifacts (perturbed weight, frozen length, NaN) are reported FAIL."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from voxc.compiler import parity
from voxc.models.family import init_module, model_spec
from voxc.targets.ort_runner import OrtRunner as runner

pytestmark = pytest.mark.slow


def _portable(tiny_build, name):
    return tiny_build / "cpu" / name / f"{name}.onnx"


def _reference(tiny_build, name, cfg):
    from safetensors.torch import load_file
    m = init_module(name, cfg)
    m.load_state_dict(load_file(str(tiny_build / "cpu" / name / "reference.safetensors")))
    return m


def test_intact_artifact_passes(tiny_build, tiny_cfg):
    spec = model_spec("vocoder", tiny_cfg)
    rows = parity.check(spec, _reference(tiny_build, "vocoder", tiny_cfg),
                        runner(_portable(tiny_build, "vocoder")), "fp32", "onnxruntime")
    assert rows and all(r["passed"] for r in rows)


@pytest.mark.parametrize("name", ["vocoder", "acoustic_decoder", "speaker_encoder"])
def test_perturbed_weight_fails(tiny_build, tiny_cfg, tmp_path, name):
    model = onnx.load(str(_portable(tiny_build, name)))
    biggest = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    w = numpy_helper.to_array(biggest).copy()
    w.flat[: w.size // 10] *= 1.5  # a tenth of one weight tensor scaled by 1.5
    biggest.CopyFrom(numpy_helper.from_array(w, biggest.name))
    onnx.save(model, str(tmp_path / "damaged.onnx"))
    rows = parity.check(model_spec(name, tiny_cfg), _reference(tiny_build, name, tiny_cfg),
                        runner(tmp_path / "damaged.onnx"), "fp32", "onnxruntime")
    failed = [r for r in rows if not r["passed"]]
    assert failed and {r["metric"] for r in failed} & {"rel_l2", "cosine", "snr_db", "max_abs"}


class FrozenRegulator(torch.nn.Module):
    """The trap: the frame count computed with int() is baked into a TorchScript export."""

    def forward(self, hidden, durations, frame_mask):
        frames = int(durations.sum(1).max())
        index = torch.repeat_interleave(torch.arange(hidden.shape[1]), durations[0])[:frames]
        return hidden[:, index] * frame_mask[:, :frames, None]


def test_length_frozen_at_export_fails(tiny_cfg, tmp_path):
    spec = model_spec("length_regulator", tiny_cfg)
    example = spec.make_inputs(1, spec.dims["phonemes"].export, np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(FrozenRegulator(), tuple(torch.from_numpy(example[t.name]) for t in spec.inputs),
                          str(tmp_path / "frozen.onnx"), dynamo=False,
                          input_names=[t.name for t in spec.inputs], output_names=["frame_states"],
                          dynamic_axes={"hidden": {1: "phonemes"}, "durations": {1: "phonemes"},
                                        "frame_mask": {1: "frames"}})
    rows = parity.check(spec, init_module("length_regulator", tiny_cfg), runner(tmp_path / "frozen.onnx"),
                        "fp32", "onnxruntime")
    failed = [r for r in rows if not r["passed"]]
    assert failed and {r["metric"] for r in failed} <= {"shape", "runs"}
    assert any(r["length"] > 2 * spec.dims["phonemes"].export for r in failed)


class NaNRunner:
    name = "nan"

    def __init__(self, inner):
        self.inner = inner

    def infer(self, feeds):
        out = self.inner.infer(feeds)
        out["waveform"][..., :3] = np.nan
        return out


def test_nan_output_fails(tiny_build, tiny_cfg):
    rows = parity.check(model_spec("vocoder", tiny_cfg), _reference(tiny_build, "vocoder", tiny_cfg),
                        NaNRunner(runner(_portable(tiny_build, "vocoder"))), "fp32", "onnxruntime")
    assert {r["metric"] for r in rows if not r["passed"]} == {"finite"}


def test_wrong_durations_fail_exact_match(tiny_build, tiny_cfg):
    class OffByOne(NaNRunner):
        def infer(self, feeds):
            out = self.inner.infer(feeds)
            out["durations"] = out["durations"] + 1
            return out
    rows = parity.check(model_spec("acoustic_encoder", tiny_cfg), _reference(tiny_build, "acoustic_encoder", tiny_cfg),
                        OffByOne(runner(_portable(tiny_build, "acoustic_encoder"))), "fp32", "onnxruntime")
    assert {r["metric"] for r in rows if not r["passed"]} == {"exact_match", "frame_drift"}
