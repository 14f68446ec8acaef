"""Import an EmotiVoice voice: its files -> a voxc preset (sizes from config.yaml and tensor shapes) and one
safetensors state dict per graph.

A user's checkout holds: the generator `g_XXXXXXXX` ({'generator': state_dict}, keys `am.*` PromptTTS and
`generator.*` HiFi-GAN, weight norm in either form), the style encoder `checkpoint_XXXXXX` ({'model':
state_dict} saved from DDP: `module.bert.*` plus classifier heads unused at inference), the SimBERT folder
(config.json, vocab.txt), config.yaml (heads and layer counts live only here), the tokenlist and the
speaker list. Everything is loaded with torch.load(weights_only=True): a user's pickle is never executed.
Training-only keys (the alignment module, the classifier heads) and the legacy keys EmotiVoice itself
ignores (LEGACY_KEYS, each with its reason) are skipped, the legacy ones reported in one informational
line; anything else that does not fit is refused in one line naming the keys or shapes and the likely
cause (a different model size, or a different kind of file). Every file is checked before any stage
runs (models/emotivoice/validate.py: config.yaml's types and values, UTF-8 lists without repeats,
finite weights). An English lexicon (`lexicon/librispeech-lexicon.txt`) is imported with the voice.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voxc.core.errors import VoxcError, first_line

# Keys that EmotiVoice's loader skips (it loads the style encoder with strict=False) and that hold nothing
# voxc's graphs need; each is checked to be what its reason says before it is skipped.
LEGACY_KEYS = {
    "module.bert.embeddings.position_ids": "the positions buffer (0, 1, 2, ...) that transformers before 4.31 "
                                           "saved with BERT; BERT rebuilds it, newer transformers never save it",
    "module.bert.embeddings.token_type_ids": "the all-zero token-type buffer some transformers versions saved "
                                             "with BERT; rebuilt by BERT, never learned",
}
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
    lexicon: Path | None = None   # lexicon/librispeech-lexicon.txt (English words -> ARPAbet)

    @staticmethod
    def from_checkout(root: str | Path, **overrides) -> "VoiceFiles":
        """The standard layout of an EmotiVoice checkout (the newest g_* and checkpoint_*), any file overridable."""
        root = Path(root)
        if not root.is_dir():
            raise VoxcError(f"EmotiVoice folder {root} does not exist; pass --from DIR (your EmotiVoice checkout)")

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
            "lexicon": root / "lexicon" / "librispeech-lexicon.txt",
        }
        optional = ("speakers", "lexicon")
        found.update({k: Path(v) for k, v in overrides.items() if v})
        for k, v in found.items():
            named = k in overrides and overrides[k]
            if (k not in optional or named) and (v is None or not Path(v).exists()):
                raise VoxcError(f"EmotiVoice {k.replace('_', ' ')} not found under {root} (looked for "
                                f"{v or 'the newest ' + k}); pass --from-file {k}=PATH")
        for k in optional:
            if found[k] is not None and not Path(found[k]).is_file():
                found[k] = None
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
                        f"({first_line(exc)}); voxc never runs a checkpoint's code -- "
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


def _count(state: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def _shape(state: dict, key: str, path: Path) -> tuple:
    if key not in state:
        raise VoxcError(f"{path} lacks {key}; not an EmotiVoice generator checkpoint (or a different model version)")
    return tuple(state[key].shape)


def preset_from(files: VoiceFiles, dims: dict) -> tuple[dict, dict]:
    """(voxc preset, state dict per graph) of a user's EmotiVoice voice."""
    from voxc.models.emotivoice import validate as V
    from voxc.models.weights import fold_weight_norm
    doc = V.read_config(files.config)
    model = doc["model"]
    gen = fold_weight_norm(_load(files.generator, "generator", "generator"))
    style = _load(files.style_encoder, "model", "style encoder")
    V.finite_weights(gen, files.generator)
    V.finite_weights(style, files.style_encoder)
    bert_cfg = V.bert_config(files.bert / "config.json")
    vocab = V.text_lines(files.bert / "vocab.txt", "the SimBERT vocab.txt (WangZeJun/simbert-base-chinese)")
    tokens = V.unique_lines(files.tokens, "tokenlist", "data/youdao/text/tokenlist the voice was trained with")
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
    heads = {key: V.heads(model, key, hidden, files.config) for key in ("encoder_n_heads", "decoder_n_heads")}
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
            "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act")
    bert = {k: bert_cfg[k] for k in keys if k in bert_cfg}
    if bert.get("hidden_size") != bert_dim:
        raise VoxcError(f"the SimBERT config's hidden_size {bert.get('hidden_size')} does not match the "
                        f"generator's style/content width {bert_dim}; pass the style encoder this voice was trained with")
    voc = {"initial_channels": _shape(gen, "generator.conv_pre.weight", g)[0],
           **V.vocoder_config(doc, files.config, gen)}
    speakers = V.speakers(files.speakers, spk[0]) if files.speakers else []
    cfg = {
        "family": "emotivoice", "seed": 1234, "sample_rate": V.sample_rate(doc, files.config), "hop": doc["hop"],
        "hidden": hidden, "n_tokens": emb[0], "n_speakers": spk[0], "speaker_dim": spk[1], "bert_dim": bert_dim,
        "encoder_heads": heads["encoder_n_heads"], "decoder_heads": heads["decoder_n_heads"],
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
        "speakers": speakers, "dims": dims,
    }
    from voxc.models.emotivoice.lexicon import read_lexicon
    cfg["lexicon"] = read_lexicon(files.lexicon, tokens) if files.lexicon is not None else None
    return cfg, split(gen, style, files)


def legacy_keys(style: dict, path: Path) -> list[str]:
    """The LEGACY_KEYS present in a style-encoder state dict, each checked to hold what its reason says."""
    import torch
    found = [k for k in LEGACY_KEYS if k in style]
    for k in found:
        v = style[k]
        want = torch.arange(v.shape[-1]).expand_as(v) if k.endswith("position_ids") else torch.zeros_like(v)
        if v.dim() != 2 or v.shape[0] != 1 or v.is_floating_point() or not torch.equal(v, want):
            raise VoxcError(f"{path}: {k} {tuple(v.shape)} is not the {'0, 1, 2, ...' if k.endswith('position_ids') else 'all-zero'} "
                            "buffer BERT saves; the style encoder file was altered -- pass EmotiVoice's own checkpoint")
    return found


def split(gen: dict, style: dict, files: VoiceFiles) -> dict[str, dict]:
    """One state dict per graph (prefixes renamed to the module's); training-only and legacy keys dropped
    (the legacy ones reported in one line); keys that belong to no graph are refused by name and file."""
    out: dict[str, dict] = {g: {} for g in GRAPH_PREFIXES}
    skipped = legacy_keys(style, files.style_encoder)
    for path, state, kinds in ((files.generator, gen, ("acoustic_encoder", "acoustic_decoder", "vocoder")),
                               (files.style_encoder, style, ("prompt_encoder",))):
        stray = []
        for k, v in state.items():
            if k.startswith(TRAINING_ONLY) or (k in LEGACY_KEYS and state is style):
                continue
            graph = next((g for g in kinds if k.startswith(GRAPH_PREFIXES[g])), None)
            if graph is None:
                stray.append(k)
                continue
            old, new = RENAME[graph]
            out[graph][new + k[len(old):]] = v
        if stray:
            other = "style encoder" if state is gen else "generator"
            misplaced = any(k.startswith(p) for k in stray for g, ps in GRAPH_PREFIXES.items() if g not in kinds
                            for p in ps)
            cause = (f"it holds {other} keys: the {other} file was passed in its place" if misplaced else
                     "a different kind of file (not EmotiVoice's PromptTTS/HiFi-GAN generator or SimBERT style "
                     "encoder), or another model version")
            raise VoxcError(f"unexpected keys {', '.join(stray[:4])}{' ...' if len(stray) > 4 else ''} in {path}: "
                            f"{cause}; pass the EmotiVoice {'generator (g_*)' if state is gen else 'style encoder (checkpoint_*)'} file")
    for g, sd in out.items():
        if not sd:
            raise VoxcError(f"no {g} weights found (keys {' or '.join(GRAPH_PREFIXES[g])}); check the "
                            f"{'style encoder' if g == 'prompt_encoder' else 'generator'} file")
    if skipped:
        print(f"voxc: {files.style_encoder.name}: skipped {len(skipped)} legacy key(s) EmotiVoice also ignores: "
              + "; ".join(f"{k} ({LEGACY_KEYS[k].split(';')[0]})" for k in skipped), flush=True)
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
        raise VoxcError(f"{source} does not fit the EmotiVoice {graph}: {'; '.join(parts)}; "
                        f"{_likely_cause(set(state), set(own), bool(shapes), graph)}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def _block(key: str) -> str | None:
    """The numbered block a key sits in ('encoder.encoders.3.' of 'encoder.encoders.3.norm1.weight')."""
    import re
    m = re.match(r"(.*?\.\d+\.)", key)
    return m.group(1) if m else None


def _likely_cause(have: set, want: set, shapes: bool, graph: str) -> str:
    """A different model size (whole layers more or fewer, or other widths) or a different kind of file
    (key names the graph does not have at any size, or layers with parts missing)."""
    sized = "config.yaml (heads, layer counts)" if graph != "prompt_encoder" else "the SimBERT config.json"

    def whole(keys: set, other: set) -> bool:      # every key is in a numbered block `other` lacks entirely
        return all(_block(k) and not any(o.startswith(_block(k)) for o in other) for k in keys)
    missing, extra = want - have, have - want
    if (missing or extra) and whole(missing, have) and whole(extra, want) or (shapes and not missing and not extra):
        return (f"a different model size: the checkpoint's layer counts or widths differ from {sized}; pass "
                "the config this checkpoint was trained with (or the checkpoint of this config)")
    return ("a different kind of file, a damaged file or another model version: these keys do not make "
            f"EmotiVoice's {graph} at any size; check that each file is the one its kind names and that the "
            "files belong to one voice")


def import_voice(source, files: dict, base: dict) -> tuple[dict, dict]:
    """The family's importer: an EmotiVoice checkout (and/or its files named one by one) -> (preset with
    the base preset's length ranges, state dict per graph)."""
    unknown = set(files) - {"generator", "style_encoder", "bert", "config", "tokens", "speakers", "lexicon"}
    if unknown:
        raise VoxcError(f"unknown EmotiVoice file kind(s) {', '.join(sorted(unknown))}: use generator, style_encoder, "
                        "bert, config, tokens, speakers, lexicon")
    vf = VoiceFiles.from_checkout(source, **files)
    cfg, states = preset_from(vf, base["dims"])
    from voxc.models.family import init_module
    for graph, state in states.items():             # refuse a misfit now, in one line, before any stage runs
        source_file = vf.style_encoder if graph == "prompt_encoder" else vf.generator
        load_graph_state(init_module(graph, cfg), state, graph, str(source_file))
    return cfg, states
