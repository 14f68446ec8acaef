"""Seeded presets of the EmotiVoice family (an imported voice brings its own sizes, checkpoint.py).

`released`: the shapes of EmotiVoice's published voice (53 M-parameter generator: hidden 384, 4+4
Transformer blocks with 8 heads, 2014 speakers, HiFi-GAN V1; BERT-base prompt encoder, vocab 13685),
for benchmarks without the released weights; `tiny`: the sizes of the oracle fixtures, for tests.
"""
from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
HIFIGAN_V1 = {"upsample_rates": [8, 8, 2, 2], "upsample_kernels": [16, 16, 4, 4], "resblock": "1",
              "resblock_kernels": [3, 7, 11], "resblock_dilations": [[1, 3, 5]] * 3}


def _lines(name: str) -> list[str]:
    return (DATA / name).read_text(encoding="utf-8").splitlines()


def _bert_vocab(size: int) -> list[str]:
    """The fixture's small WordPiece vocabulary, padded with unused entries to `size`."""
    vocab = _lines("bert_vocab_tiny.txt")
    return vocab + [f"[unused{i}]" for i in range(size - len(vocab))]


def _common(hidden, heads, layers, ffn, speakers, var_chans, bert, vocoder_channels, dims) -> dict:
    return {"family": "emotivoice", "seed": 1234, "sample_rate": 16000, "hop": 256, "n_mels": 80,
            "hidden": hidden, "n_tokens": 502, "n_speakers": speakers, "speaker_dim": hidden, "bert_dim": bert["hidden_size"],
            "encoder_heads": heads, "decoder_heads": heads, "encoder_layers": layers, "decoder_layers": layers,
            "ffn": ffn, "ffn_kernel": 3, "variance_chans": var_chans, "variance_kernel": 3, "pitch_layers": 3,
            "energy_layers": 2, "duration_layers": 2, "duration_kernel": 3, "variance_embed_kernel": 9,
            "vocoder": {"initial_channels": vocoder_channels, **HIFIGAN_V1}, "bert": bert,
            "tokens": _lines("tokenlist"), "bert_vocab": _bert_vocab(bert["vocab_size"]),
            "speakers": [str(i) for i in range(speakers)], "lexicon": None, "dims": dims}


def presets() -> dict:
    bert_base = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                 "vocab_size": 13685, "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
                 "hidden_act": "gelu"}
    bert_tiny = {**bert_base, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "intermediate_size": 128, "vocab_size": 88}
    return {
        "tiny": _common(64, 2, 2, 256, 8, 64, bert_tiny, 64,
                        {"batch": [1, 1, 2, 2], "phonemes": [2, 24, 12, 96], "frames": [8, 96, 40, 384],
                         "tokens": [2, 12, 8, 48]}),
        "released": _common(384, 8, 4, 1536, 2014, 384, bert_base, 512,
                            {"batch": [1, 1, 2, 4], "phonemes": [2, 64, 32, 256], "frames": [8, 320, 128, 1024],
                             "tokens": [2, 16, 8, 128]}),
    }
