"""Worked example (docs/own-vocoder.md): a user's own trained HiFi-GAN, declared as a family in a folder
outside voxc's tree, built with its own mel settings, its own audio folder, its own int8 settings and
TorchScript weights -- through `voxc build` exactly as a user runs it, no workaround.

The vocoder is trained here for a few seconds (spectral loss on the audio folder), so nothing is
downloaded. The int8 rung's recorded quantised-node counts must be the layers the family's settings
name: every Conv and ConvTranspose the graph holds but the two the settings keep float.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from voxc.calibration.audio_folder import load as load_folder
from voxc.calibration.sets import load_set
from voxc.cli import main
from voxc.models.family import family

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "my_vocoder.py"
CLIPS = 16
TRAIN_STEPS = 60

pytestmark = pytest.mark.slow


def _audio_folder(folder: Path) -> Path:
    """The user's recordings: 16 kHz clips as .flac and .wav (the build reads them at the vocoder's 24 kHz)."""
    import soundfile as sf
    folder.mkdir()
    for i, u in enumerate(load_set("parity")[:CLIPS]):
        sf.write(str(folder / f"clip{i:02d}.{'flac' if i % 2 else 'wav'}"), u.wave, 16000)
    return folder


def _stft_loss(torch, y, x):
    loss = 0.0
    for n_fft, hop in ((256, 64), (512, 128), (1024, 256)):
        w = torch.hann_window(n_fft)
        sy = torch.stft(y, n_fft, hop, window=w, return_complex=True).abs() + 1e-5
        sx = torch.stft(x, n_fft, hop, window=w, return_complex=True).abs() + 1e-5
        loss = loss + (sy - sx).norm() / sx.norm() + (sy.log() - sx.log()).abs().mean()
    return loss


def _train(module, audio: Path, out: Path) -> tuple[float, float]:
    """A few seconds of training (TRAIN_STEPS) on the folder's clips; saves the generator as TorchScript."""
    import torch
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # small convolutions: one thread is faster than two busy ones
    fam = module.FAMILY
    gen = fam.graphs[0].build(fam.preset()).train()
    items = load_folder(audio, module.MEL, "calibration")
    hop, seg = module.MEL.hop, 24
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam(gen.parameters(), 2e-3, betas=(0.8, 0.99))
    losses = []
    for _ in range(TRAIN_STEPS):
        mels, waves = [], []
        for u in (items[k] for k in rng.integers(0, len(items), 4)):
            a = int(rng.integers(0, u.frames - seg))
            mels.append(u.mel[:, a:a + seg]), waves.append(u.wave[a * hop:(a + seg) * hop])
        y = gen(torch.from_numpy(np.stack(mels)))[:, 0]
        loss = _stft_loss(torch, y, torch.from_numpy(np.stack(waves)))
        opt.zero_grad(), loss.backward(), opt.step()
        losses.append(float(loss.detach()))
    gen.eval()
    torch.set_num_threads(threads)
    torch.jit.trace(gen, torch.from_numpy(items[0].mel[None, :, :32].copy())).save(str(out))
    return float(np.mean(losses[:5])), float(np.mean(losses[-5:]))


@pytest.fixture(scope="module")
def own_build(tmp_path_factory):
    """The user's folder (outside the repository): the family module, the audio, the TOML, the weights."""
    user = tmp_path_factory.mktemp("user")
    shutil.copy(EXAMPLE, user / "my_vocoder.py")
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(user))
    mp.setenv("PYTHONPATH", str(user))
    mp.setenv("VOXC_FAMILIES", "my_vocoder=my_vocoder")
    family.cache_clear()
    import my_vocoder
    audio = _audio_folder(user / "recordings")
    first, last = _train(my_vocoder, audio, user / "generator.ts")
    (user / "int8.toml").write_text(
        "# my settings: fewer calibration clips, percentile activations, no extra float layers\n"
        "[options.onnxruntime.models.vocoder]\n"
        "calibration_items = 8\ncalibrate_method = \"percentile\"\nsensitivity_layers = 0\n")
    artifacts = user / "artifacts"
    code = main(["build", "--target", "onnxruntime", "--family", "my_vocoder", "--artifacts", str(artifacts),
                 "--checkpoint", f"vocoder={user / 'generator.ts'}", "--data", str(audio),
                 "--quantisation", str(user / "int8.toml"), "--precisions", "vocoder=int8,fp32",
                 "--exporter", "torchscript", "--jobs", "2"])
    yield {"artifacts": artifacts, "code": code, "losses": (first, last), "module": my_vocoder, "audio": audio}
    mp.undo()
    family.cache_clear()


def test_the_vocoder_was_trained(own_build):
    first, last = own_build["losses"]
    assert last < 0.8 * first, (first, last)


def test_it_builds_and_passes_with_no_workaround(own_build):
    assert own_build["code"] == 0
    folder = own_build["artifacts"] / "onnxruntime"
    m = json.loads((folder / "manifest.json").read_text())
    assert m["family"] == "my_vocoder"
    assert m["models"]["vocoder"]["sample_rate"] == 24000
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["passed"]


def test_the_int8_rung_quantised_the_layers_its_settings_name(own_build):
    folder = own_build["artifacts"] / "onnxruntime"
    m = json.loads((folder / "manifest.json").read_text())
    rung = m["models"]["vocoder"]["precision"]["onnxruntime"]["figures"]["int8"]
    # the family's settings: every weighted Conv and ConvTranspose ("auto"), conv_pre and conv_post float;
    # the user's TOML: percentile calibration on 8 clips
    assert rung["int8"]["op_types"] == ["Conv", "ConvTranspose"]
    assert rung["int8"]["calibrate_method"] == "percentile" and rung["calibration_items"] == 8
    assert rung["fp32_nodes"] == ["/conv_pre/Conv", "/conv_post/Conv"]
    # 4 upsampling layers; 4 stages x 2 resblocks x 2 dilations x 2 convolutions
    assert rung["quantised"]["ops"]["ConvTranspose"] == 4 and rung["quantised"]["ops"]["Conv"] == 32
    assert rung["quantised"]["markers"] > 0


def test_every_gate_used_the_unaligned_audio(own_build):
    parity = json.loads((own_build["artifacts"] / "onnxruntime" / "parity.json").read_text())
    chain = parity["chain"]["runtimes"]["onnxruntime"]
    assert len(chain["utterances"]) == 3 and chain["passed"]
    assert chain["stream"]["items"] == 3 and chain["stream"]["passed"]


def test_it_reverifies_on_the_same_audio(own_build):
    assert main(["parity", "--target", "onnxruntime", "--artifacts", str(own_build["artifacts"]),
                 "--data", str(own_build["audio"])]) == 0


def test_release_audio_and_metrics_use_its_own_sample_rate(own_build):
    """The release page's A/B clips and their metrics are at the family's output rate (24 kHz here), not 16 kHz."""
    import io

    import soundfile as sf
    from voxc.compiler import release_listen
    from voxc.compiler.build import audio_folder
    from voxc.core.target import read
    folder = own_build["artifacts"] / "onnxruntime"
    with audio_folder(own_build["audio"]):
        heard = release_listen.listen(folder, read(folder).manifest.doc, 1)
    assert heard["sample_rate"] == 24000 and heard["utterances"], heard["skipped"]
    wav = release_listen.wav_bytes(heard["utterances"][0]["reference"], heard["sample_rate"])
    assert sf.info(io.BytesIO(wav)).samplerate == 24000
