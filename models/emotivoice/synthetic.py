"""A synthetic EmotiVoice checkout: seeded random weights in EmotiVoice's own file layout and key names.

The released EmotiVoice weights cannot be downloaded here; benchmarks and full-size builds use a
checkout of the same shapes (preset `released`: 53 M-parameter generator, BERT-base style encoder),
written exactly as EmotiVoice's trainers write theirs (the style encoder with the `position_ids`
buffer older transformers saved, as in the released checkpoint_163431), so it goes through the real
importer:

    python -m voxc.models.emotivoice.synthetic OUT_DIR [--preset released|tiny]
    voxc build --family emotivoice --from OUT_DIR --target cpu
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from voxc.models.emotivoice.checkpoint import RENAME


def write_checkout(out: str | Path, preset: str = "released", seed: int = 1234, legacy_position_ids: bool = True,
                   lexicon: str | None = None) -> Path:
    """The checkout under `out`; `lexicon`: the text of lexicon/librispeech-lexicon.txt (none when None)."""
    import torch
    import yaml

    from voxc.core.atomic import atomic_path
    from voxc.models.family import family, init_module
    fam = family("emotivoice")
    cfg = {**fam.preset(preset), "seed": seed}
    out = Path(out)
    gen, style = {}, {}
    for graph in ("acoustic_encoder", "acoustic_decoder", "vocoder", "prompt_encoder"):
        module = init_module(graph, cfg)
        if graph == "acoustic_encoder":      # a random duration predictor says ~0 frames: a few per token instead
            with torch.no_grad():
                module.duration_predictor.linear.bias.fill_(1.6)
        old, new = RENAME[graph]
        target = style if graph == "prompt_encoder" else gen
        target.update({old + k[len(new):]: v.clone() for k, v in module.state_dict().items()})
    if legacy_position_ids:                  # as transformers < 4.31 saved BERT (EmotiVoice's released file)
        style["module.bert.embeddings.position_ids"] = torch.arange(cfg["bert"]["max_position_embeddings"])[None]
    paths = {"generator": out / "outputs" / "prompt_tts_open_source_joint" / "ckpt" / "g_00000000",
             "style": out / "outputs" / "style_encoder" / "ckpt" / "checkpoint_000000",
             "bert": out / "WangZeJun" / "simbert-base-chinese", "config": out / "config" / "joint" / "config.yaml",
             "text": out / "data" / "youdao" / "text"}
    for p in paths.values():
        (p if p.suffix == "" and not p.name.startswith(("g_", "checkpoint_")) else p.parent).mkdir(parents=True,
                                                                                                  exist_ok=True)
    with atomic_path(paths["generator"]) as tmp:
        torch.save({"generator": gen}, tmp)
    with atomic_path(paths["style"]) as tmp:
        torch.save({"model": style}, tmp)
    (paths["bert"] / "config.json").write_text(json.dumps({**cfg["bert"], "model_type": "bert"}, indent=2))
    (paths["bert"] / "vocab.txt").write_text("\n".join(cfg["bert_vocab"]) + "\n", encoding="utf-8")
    v = cfg["vocoder"]
    model = {"encoder_n_heads": cfg["encoder_heads"], "decoder_n_heads": cfg["decoder_heads"],
             "encoder_n_layers": cfg["encoder_layers"], "decoder_n_layers": cfg["decoder_layers"],
             "encoder_n_hidden": cfg["hidden"], "decoder_n_hidden": cfg["hidden"], "bert_embedding": cfg["bert_dim"],
             "variance_n_hidden": cfg["variance_chans"], "upsample_rates": v["upsample_rates"],
             "upsample_kernel_sizes": v["upsample_kernels"], "resblock": v["resblock"],
             "upsample_initial_channel": v["initial_channels"], "resblock_kernel_sizes": v["resblock_kernels"],
             "resblock_dilation_sizes": v["resblock_dilations"]}
    paths["config"].write_text(yaml.safe_dump({"sr": 16000, "hop_length": cfg["hop"], "n_mels": cfg["n_mels"],
                                               "model": model}))
    (paths["text"] / "tokenlist").write_text("\n".join(cfg["tokens"]) + "\n", encoding="utf-8")
    (paths["text"] / "speaker2").write_text("\n".join(f"spk{i}" for i in range(cfg["n_speakers"])) + "\n")
    if lexicon is not None:
        (out / "lexicon").mkdir(exist_ok=True)
        (out / "lexicon" / "librispeech-lexicon.txt").write_text(lexicon, encoding="utf-8")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--preset", default="released", choices=["released", "tiny"])
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args(argv)
    print(f"wrote {write_checkout(args.out, args.preset, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
