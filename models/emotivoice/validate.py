"""Checks on an EmotiVoice voice's files before anything is built (called by checkpoint.py's importer).

Each reader returns the value the importer needs or raises one VoxcError line naming the file, what is
wrong and what to pass instead: config.yaml's types and values (heads, HiFi-GAN rates whose product is
the hop, kernels that match the generator's weights), UTF-8 text lists without repeats (tokenlist,
speaker2, vocab.txt), speaker names that fit the speaker table, and finite weights. Nothing here runs a
graph; a wrong file ends the import before any stage starts.
"""
from __future__ import annotations

import json
from pathlib import Path

from voxc.core.errors import VoxcError

CONFIG_HINT = "pass EmotiVoice's config/joint/config.yaml"


def _text(path: Path, what: str, hint: str) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise VoxcError(f"cannot read {path} ({exc.strerror or exc}); pass {hint}") from None
    except UnicodeDecodeError as exc:
        raise VoxcError(f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}), "
                        f"so it is not EmotiVoice's {what}; pass {hint}") from None


def text_lines(path: Path, what: str) -> list[str]:
    """A UTF-8 text file's lines, as they are."""
    return _text(path, what, what).splitlines()


def unique_lines(path: Path, what: str, hint: str) -> list[str]:
    """A list file whose line number is an id (tokenlist): UTF-8, not empty, no line twice."""
    lines = [line.strip() for line in _text(path, what, hint).splitlines()]
    if not lines:
        raise VoxcError(f"{path} is empty; pass {hint}")
    _no_repeats(lines, path, what, hint)
    return lines


def _no_repeats(lines: list[str], path: Path, what: str, hint: str) -> None:
    seen: dict[str, int] = {}
    for i, line in enumerate(lines):
        if line in seen:
            raise VoxcError(f"{path}: {line!r} is on lines {seen[line] + 1} and {i + 1}; a {what} lists each entry "
                            f"once (the line number is its id) -- pass {hint}")
        seen[line] = i


def speakers(path: Path, rows: int) -> list[str]:
    """Speaker names (line = row of the speaker table): UTF-8, at least one, none twice, no more than rows."""
    hint = "data/youdao/text/speaker2 of this voice (one speaker name a line)"
    names = [line.strip() for line in _text(path, "speaker list", hint).splitlines()]
    while names and not names[-1]:
        names.pop()
    if not any(names):
        raise VoxcError(f"{path} lists no speaker names; pass {hint}, or leave it out to use speaker ids")
    _no_repeats(names, path, "speaker list", hint)
    if len(names) > rows:
        raise VoxcError(f"{path} names {len(names)} speakers but the generator's speaker table has {rows} rows; "
                        "pass the speaker list of this generator")
    return names


def read_config(path: Path) -> dict:
    """config.yaml -> its document, with `hop` (hop_length, 256 when absent) checked; the model section
    must be a mapping."""
    import yaml
    text = _text(path, "config.yaml", CONFIG_HINT)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise VoxcError(f"{path} is not valid YAML ({type(exc).__name__}"
                        f"{f' at line {mark.line + 1}' if mark else ''}); {CONFIG_HINT}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise VoxcError(f"{path} has no 'model' section; {CONFIG_HINT}")
    doc["hop"] = _positive_int(doc.get("hop_length", 256), "hop_length", path)
    return doc


def _positive_int(value, key: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VoxcError(f"{path}: {key} = {value!r} must be a positive whole number; {CONFIG_HINT}")
    return value


def _int_list(model: dict, key: str, path: Path, example: str) -> list[int]:
    if key not in model:
        raise VoxcError(f"{path}: model.{key} is missing (e.g. {key}: {example}); {CONFIG_HINT}")
    v = model[key]
    if not isinstance(v, list) or not v:
        raise VoxcError(f"{path}: model.{key} = {v!r} must be a list like {example}; {CONFIG_HINT}")
    return [_positive_int(x, f"model.{key}", path) for x in v]


def sample_rate(doc: dict, path: Path) -> int:
    """EmotiVoice's voices are 16 kHz (`sr: 16000`), the rate voxc's runtime speaks at."""
    sr = _positive_int(doc.get("sr", 16000), "sr", path)
    if sr != 16000:
        raise VoxcError(f"{path}: sr = {sr}, but EmotiVoice voices (and voxc's runtime) are 16000 Hz; {CONFIG_HINT}")
    return sr


def heads(model: dict, key: str, hidden: int, path: Path) -> int:
    """A Transformer's head count: a positive integer dividing the hidden size."""
    if key not in model:
        raise VoxcError(f"{path}: model.{key} is missing (the generator's weights do not say it); {CONFIG_HINT}")
    n = model[key]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or hidden % n:
        raise VoxcError(f"{path}: model.{key} = {n!r} must be a positive whole number dividing the hidden size "
                        f"{hidden}; {CONFIG_HINT}")
    return n


def vocoder_config(doc: dict, path: Path, gen: dict) -> dict:
    """HiFi-GAN settings from config.yaml, checked against each other, the hop and the generator's weights."""
    model = doc["model"]
    rates = _int_list(model, "upsample_rates", path, "[8, 8, 2, 2]")
    kernels = _int_list(model, "upsample_kernel_sizes", path, "[16, 16, 4, 4]")
    res_kernels = _int_list(model, "resblock_kernel_sizes", path, "[3, 7, 11]")
    dil = model.get("resblock_dilation_sizes")
    if not isinstance(dil, list) or len(dil) != len(res_kernels) or not all(isinstance(d, list) and d for d in dil):
        raise VoxcError(f"{path}: model.resblock_dilation_sizes = {dil!r} must be one list per resblock kernel, "
                        f"like [[1, 3, 5], [1, 3, 5], [1, 3, 5]]; {CONFIG_HINT}")
    dilations = [[_positive_int(x, "model.resblock_dilation_sizes", path) for x in d] for d in dil]
    resblock = str(model.get("resblock", ""))
    if resblock not in ("1", "2"):
        raise VoxcError(f"{path}: model.resblock = {model.get('resblock')!r} must be '1' or '2'; {CONFIG_HINT}")
    product = 1
    for r in rates:
        product *= r
    if product != doc["hop"]:
        raise VoxcError(f"{path}: model.upsample_rates {rates} multiply to {product}, not the hop_length "
                        f"{doc['hop']}; {CONFIG_HINT}")
    ups = sorted({int(k.split(".")[2]) for k in gen if k.startswith("generator.ups.")})
    if len(ups) != len(rates) or len(kernels) != len(rates):
        raise VoxcError(f"{path}: model.upsample_rates has {len(rates)} entries and upsample_kernel_sizes "
                        f"{len(kernels)}, but the generator has {len(ups)} upsampling layers; {CONFIG_HINT}")
    for i, (r, k) in enumerate(zip(rates, kernels)):
        w = gen.get(f"generator.ups.{i}.weight")
        if w is not None and w.shape[-1] != k:
            raise VoxcError(f"{path}: model.upsample_kernel_sizes[{i}] = {k}, but the generator's upsampling layer "
                            f"{i} has kernel {w.shape[-1]}; {CONFIG_HINT}")
        if k < r or (k - r) % 2:
            raise VoxcError(f"{path}: upsampling layer {i} has rate {r} and kernel {k}; HiFi-GAN needs a kernel at "
                            f"least the rate with an even difference; {CONFIG_HINT}")
    return {"upsample_rates": rates, "upsample_kernels": kernels, "resblock": resblock,
            "resblock_kernels": res_kernels, "resblock_dilations": dilations}


def bert_config(path: Path) -> dict:
    hint = "the WangZeJun/simbert-base-chinese folder (config.json, vocab.txt)"
    try:
        doc = json.loads(_text(path, "SimBERT config.json", hint))
    except json.JSONDecodeError as exc:
        raise VoxcError(f"{path} is not valid JSON (line {exc.lineno}); pass {hint}") from None
    if not isinstance(doc, dict):
        raise VoxcError(f"{path} is not a BERT config (a JSON object); pass {hint}")
    return doc


def finite_weights(state: dict, path: Path) -> None:
    """Every floating-point tensor finite: an inf or NaN weight makes every output NaN."""
    import torch
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise VoxcError(f"{path}: {k} holds {bad} non-finite value(s) (inf or NaN); the checkpoint is damaged "
                            "or diverged in training -- pass an earlier checkpoint")
