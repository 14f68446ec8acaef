"""Import an EmotiVoice voice: its files -> a voxc preset (sizes from config.yaml and tensor shapes) and one
safetensors state dict per graph.

A user's checkout holds: the generator `g_XXXXXXXX` ({'generator': state_dict}, keys `am.*` PromptTTS and
`generator.*` HiFi-GAN, weight norm in either form), the style encoder `checkpoint_XXXXXX` ({'model':
state_dict} saved from DDP: `module.bert.*` plus classifier heads unused at inference), the SimBERT folder
(config.json, vocab.txt), config.yaml (heads and layer counts live only here), the tokenlist and the
speaker list. Everything is loaded with torch.load(weights_only=True): a user's pickle is never executed.
Training-only keys (the alignment module, the classifier heads) are skipped; anything else that does
not fit is refused in one line naming the keys or shapes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from voxc.core.errors import VoxcError

TRAINING_ONLY = ("am.alignment_module.", "module.pitch_clf.", "module.speed_clf.", "module.energy_clf.",
                 "module.emotion_clf.", "module.style_embed_proj.")
GRAPH_PREFIXES = {"acoustic_encoder": ("am.src_word_emb.", "am.encoder.", "am.spk_tokenizer.", "am.embed_projection1.",
                                       "am.pitch_predictor.", "am.energy_predictor.", "am.duration_predictor.",
                                       "am.pitch_embed.", "am.energy_embed."),
                  "acoustic_decoder": ("am.decoder.", "am.to_mel."),
                  "vocoder": ("generator.",),
                  "prompt_encoder": ("module.bert.",)}
# where a graph's keys sit in its voxc module
RENAME = {"acoustic_encoder": ("am.", ""), "acoustic_decoder": ("am.", ""), "vocoder": ("generator.", ""),
          "prompt_encoder": ("module.", "")}


@dataclass(frozen=True)
class VoiceFiles:
    generator: Path
    style_encoder: Path
    bert: Path               # the SimBERT folder: config.json, vocab.txt
    config: Path             # config.yaml
    tokens: Path             # tokenlist
    speakers: Path | None = None

    @staticmethod
    def from_checkout(root: str | Path, **overrides) -> "VoiceFiles":
        """The standard layout of an EmotiVoice checkout (the newest g_* and checkpoint_*), any file overridable."""
        root = Path(root)
        if not root.is_dir():
            raise VoxcError(f"EmotiVoice folder {root} does not exist; pass --emotivoice DIR (your EmotiVoice checkout)")

        def newest(folder: Path, pattern: str) -> Path | None:
            found = sorted(folder.glob(pattern)) if folder.is_dir() else []
            return found[-1] if found else None
        found = {
            "generator": newest(root / "outputs" / "prompt_tts_open_source_joint" / "ckpt", "g_*"),
            "style_encoder": newest(root / "outputs" / "style_encoder" / "ckpt", "checkpoint_*"),
            "bert": root / "WangZeJun" / "simbert-base-chinese",
            "config": root / "config" / "joint" / "config.yaml",
            "tokens": root / "data" / "youdao" / "text" / "tokenlist",
            "speakers": root / "data" / "youdao" / "text" / "speaker2",
        }
        found.update({k: Path(v) for k, v in overrides.items() if v})
        for k, v in found.items():
            if k != "speakers" and (v is None or not Path(v).exists()):
                raise VoxcError(f"EmotiVoice {k.replace('_', ' ')} not found under {root} (looked for "
                                f"{v or 'the newest ' + k}); pass --emotivoice-{k.replace('_', '-')} PATH")
        if found["speakers"] is not None and not Path(found["speakers"]).is_file():
            found["speakers"] = None
        return VoiceFiles(**found)


def _load(path: Path, key: str, what: str) -> dict:
    import pickle

    import torch
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
    except OSError as exc:
        raise VoxcError(f"cannot read {path} ({exc.strerror}); pass the EmotiVoice {what} file") from None
    if magic != b"PK" and magic[:1] != b"\x80":          # neither torch's zip format nor a pickle
        raise VoxcError(f"{path} cannot be read as a PyTorch checkpoint (not a torch.save file); pass the "
                        f"EmotiVoice {what} file")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise VoxcError(f"{path} is not a plain EmotiVoice {what} checkpoint: it needs code to unpickle "
                        f"({str(exc).strip().splitlines()[0][:120]}); voxc never runs a checkpoint's code -- "
                        "re-save it as {'" + key + "': state_dict}") from None
    except Exception as exc:
        raise VoxcError(f"{path} cannot be read as a PyTorch checkpoint ({type(exc).__name__}); pass the "
                        f"EmotiVoice {what} file") from None
    if not isinstance(obj, dict) or key not in obj or not isinstance(obj[key], dict):
        raise VoxcError(f"{path} is not an EmotiVoice {what} checkpoint: expected {{'{key}': state_dict}}, "
                        f"found {type(obj).__name__}{' with keys ' + ', '.join(map(str, list(obj)[:5])) if isinstance(obj, dict) else ''}")
    state = obj[key]
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise VoxcError(f"{path}: entries {', '.join(bad[:3])} are not tensors; not an EmotiVoice {what} checkpoint")
    return state


def read_yaml(path: Path) -> dict:
    import yaml
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise VoxcError(f"{path} is not a readable YAML config ({type(exc).__name__}); pass EmotiVoice's "
                        "config/joint/config.yaml") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise VoxcError(f"{path} has no 'model' section; pass EmotiVoice's config/joint/config.yaml")
    return doc["model"]


def _count(state: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def _shape(state: dict, key: str, path: Path) -> tuple:
    if key not in state:
        raise VoxcError(f"{path} lacks {key}; not an EmotiVoice generator checkpoint (or a different model version)")
    return tuple(state[key].shape)


def preset_from(files: VoiceFiles, dims: dict) -> tuple[dict, dict]:
    """(voxc preset, state dict per graph) of a user's EmotiVoice voice."""
    from voxc.models.weights import fold_weight_norm
    model = read_yaml(files.config)
    gen = fold_weight_norm(_load(files.generator, "generator", "generator"))
    style = _load(files.style_encoder, "model", "style encoder")
    try:
        bert_cfg = json.loads((files.bert / "config.json").read_text())
        vocab = (files.bert / "vocab.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, json.JSONDecodeError) as exc:
        raise VoxcError(f"{files.bert} must hold the SimBERT config.json and vocab.txt ({type(exc).__name__})") from None
    tokens = Path(files.tokens).read_text(encoding="utf-8").splitlines()
    g = files.generator
    emb = _shape(gen, "am.src_word_emb.weight", g)
    spk = _shape(gen, "am.spk_tokenizer.weight", g)
    w1 = _shape(gen, "am.encoder.encoders.0.feed_forward.w_1.weight", g)
    proj = _shape(gen, "am.embed_projection1.weight", g)
    hidden = emb[1]
    bert_dim = (proj[1] - hidden - spk[1]) // 2
    if len(tokens) != emb[0]:
        raise VoxcError(f"{files.tokens} lists {len(tokens)} tokens but the generator's embedding has {emb[0]} rows; "
                        "pass the tokenlist the voice was trained with")
    for key in ("encoder_n_heads", "decoder_n_heads"):
        if not isinstance(model.get(key), int) or hidden % model[key]:
            raise VoxcError(f"{files.config}: model.{key} = {model.get(key)!r} does not divide the hidden size {hidden}")
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
            "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act")
    bert = {k: bert_cfg[k] for k in keys if k in bert_cfg}
    if bert.get("hidden_size") != bert_dim:
        raise VoxcError(f"the SimBERT config's hidden_size {bert.get('hidden_size')} does not match the "
                        f"generator's style/content width {bert_dim}; pass the style encoder this voice was trained with")
    voc = {"initial_channels": _shape(gen, "generator.conv_pre.weight", g)[0],
           "upsample_rates": list(model["upsample_rates"]), "upsample_kernels": list(model["upsample_kernel_sizes"]),
           "resblock": str(model["resblock"]), "resblock_kernels": list(model["resblock_kernel_sizes"]),
           "resblock_dilations": [list(d) for d in model["resblock_dilation_sizes"]]}
    hop = 1
    for r in voc["upsample_rates"]:
        hop *= r
    cfg = {
        "family": "emotivoice", "seed": 1234, "sample_rate": 16000, "hop": hop,
        "hidden": hidden, "n_tokens": emb[0], "n_speakers": spk[0], "speaker_dim": spk[1], "bert_dim": bert_dim,
        "encoder_heads": model["encoder_n_heads"], "decoder_heads": model["decoder_n_heads"],
        "encoder_layers": _count(gen, "am.encoder.encoders."), "decoder_layers": _count(gen, "am.decoder.encoders."),
        "ffn": w1[0], "ffn_kernel": w1[2],
        "variance_chans": _shape(gen, "am.pitch_predictor.conv.0.0.weight", g)[0],
        "variance_kernel": _shape(gen, "am.pitch_predictor.conv.0.0.weight", g)[2],
        "pitch_layers": _count(gen, "am.pitch_predictor.conv."), "energy_layers": _count(gen, "am.energy_predictor.conv."),
        "duration_layers": _count(gen, "am.duration_predictor.conv."),
        "duration_kernel": _shape(gen, "am.duration_predictor.conv.0.0.weight", g)[2],
        "variance_embed_kernel": _shape(gen, "am.pitch_embed.0.weight", g)[2],
        "n_mels": _shape(gen, "am.to_mel.weight", g)[0], "vocoder": voc, "bert": bert,
        "tokens": tokens, "bert_vocab": vocab,
        "speakers": Path(files.speakers).read_text(encoding="utf-8").splitlines() if files.speakers else [],
        "dims": dims,
    }
    return cfg, split({**gen, **style}, files)


def split(state: dict, files: VoiceFiles) -> dict[str, dict]:
    """One state dict per graph (prefixes renamed to the module's), training-only keys dropped; keys
    that belong to no graph are refused by name."""
    out: dict[str, dict] = {g: {} for g in GRAPH_PREFIXES}
    stray = []
    for k, v in state.items():
        if k.startswith(TRAINING_ONLY):
            continue
        graph = next((g for g, ps in GRAPH_PREFIXES.items() if k.startswith(ps)), None)
        if graph is None:
            stray.append(k)
            continue
        old, new = RENAME[graph]
        out[graph][new + k[len(old):]] = v
    if stray:
        raise VoxcError(f"unexpected keys {', '.join(stray[:4])}{' ...' if len(stray) > 4 else ''} in "
                        f"{files.generator.name}/{files.style_encoder.name}: not an EmotiVoice PromptTTS/HiFi-GAN/BERT "
                        "checkpoint of the supported version")
    for g, sd in out.items():
        if not sd:
            raise VoxcError(f"no {g} weights found (keys {' or '.join(GRAPH_PREFIXES[g])}); check the "
                            f"{'style encoder' if g == 'prompt_encoder' else 'generator'} file")
    return out


def load_graph_state(module, state: dict, graph: str, source: str) -> None:
    """Strict load with one-line refusals naming missing/unexpected keys and mismatched shapes."""
    own = module.state_dict()
    old, new = RENAME.get(graph, ("", ""))
    shown = lambda k: old + k[len(new):]                 # keys named as in the user's file
    missing = [shown(k) for k in sorted(set(own) - set(state))]
    extra = [shown(k) for k in sorted(set(state) - set(own))]
    shapes = [f"{shown(k)} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
              if tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        parts = ([f"missing {', '.join(missing[:4])}"] if missing else []) + \
                ([f"unexpected {', '.join(extra[:4])}"] if extra else []) + \
                ([f"shape mismatch {'; '.join(shapes[:3])} (checkpoint vs model)"] if shapes else [])
        raise VoxcError(f"{source} does not fit the EmotiVoice {graph}: {'; '.join(parts)}; check config.yaml "
                        "and that the files belong to one voice")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def import_voice(source, files: dict, base: dict) -> tuple[dict, dict]:
    """The family's importer: an EmotiVoice checkout (and/or its files named one by one) -> (preset with
    the base preset's length ranges, state dict per graph)."""
    unknown = set(files) - {"generator", "style_encoder", "bert", "config", "tokens", "speakers"}
    if unknown:
        raise VoxcError(f"unknown EmotiVoice file kind(s) {', '.join(sorted(unknown))}: use generator, style_encoder, "
                        "bert, config, tokens, speakers")
    vf = VoiceFiles.from_checkout(source, **files)
    cfg, states = preset_from(vf, base["dims"])
    from voxc.models.family import init_module
    for graph, state in states.items():             # refuse a misfit now, in one line, before any stage runs
        source_file = vf.style_encoder if graph == "prompt_encoder" else vf.generator
        load_graph_state(init_module(graph, cfg), state, graph, str(source_file))
    return cfg, states
