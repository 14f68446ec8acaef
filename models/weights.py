"""Loading and saving weights safely: safetensors, torch.load(weights_only=True), or a TorchScript
module's state_dict -- never pickled Python code.

A TorchScript archive (`--checkpoint vocoder=model.ts`) is read with torch.jit.load, whose unpickler
resolves only TorchScript types and tensors (no Python globals); the one way such an archive runs code
while loading is a scripted `__setstate__`, so an archive whose code defines one is refused before
loading. Only its parameters and buffers are kept; its forward is never run.

Checkpoints are normalised before the strict key check: a wrapping dict ("state_dict", "model",
"generator") is unwrapped and weight norm in either form is folded into plain weights.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from voxc.core.errors import VoxcError, first_line

_WRAPPERS = ("state_dict", "model", "generator", "module")


def _norm_except_dim0(v: torch.Tensor) -> torch.Tensor:
    return v.norm(dim=tuple(range(1, v.dim())), keepdim=True)


_NORM_PAIRS = (("weight_v", "weight_g"), ("parametrizations.weight.original1", "parametrizations.weight.original0"))


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace (weight_g, weight_v) and parametrizations.weight.original0/1 pairs by weight = g * v / |v|."""
    out: dict[str, torch.Tensor] = {}
    gains = {g for _, g in _NORM_PAIRS}
    for key, value in state.items():
        leaf = next((pair for pair in _NORM_PAIRS if key == pair[0] or key.endswith("." + pair[0])), None)
        if leaf is None:
            if not any(key == g or key.endswith("." + g) for g in gains):
                out[key] = value
            continue
        prefix = key[: -len(leaf[0])]
        out[prefix + "weight"] = state[prefix + leaf[1]] * value / _norm_except_dim0(value)
    return out


def torchscript_archive(path: Path) -> bool:
    """Whether a file is a TorchScript archive (a zip holding code/ and constants.pkl)."""
    import zipfile
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.split("/", 1)[-1] == "constants.pkl" for n in names) and any("/code/" in f"/{n}" for n in names)


def _torchscript_state(path: Path) -> dict[str, torch.Tensor]:
    import zipfile
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if "/code/" in f"/{name}" and name.endswith(".py") and b"__setstate__" in z.read(name):
                raise VoxcError(f"checkpoint {path} is a TorchScript archive that runs its own code when loaded "
                                f"(__setstate__ in {name}); save its state_dict() as .safetensors instead")
    module = torch.jit.load(str(path), map_location="cpu")
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise VoxcError(f"checkpoint {path} does not exist; pass --checkpoint NAME=PATH to an existing file")
    try:
        if torchscript_archive(path):
            state = _torchscript_state(path)
        elif path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except VoxcError:
        raise
    except Exception as exc:  # corrupt file, or a pickle that needs code: both refused
        raise VoxcError(f"checkpoint {path} cannot be read safely ({first_line(exc) or type(exc).__name__}); "
                        "provide a .safetensors file, a plain torch state_dict or a TorchScript module") from None
    for wrapper in _WRAPPERS:
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VoxcError(f"checkpoint {path} is not a state_dict of tensors; save module.state_dict()")
    return fold_weight_norm(state)


def _names(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")


def load_into(module: nn.Module, path: str | Path, model: str) -> None:
    """Strictly load a checkpoint; missing, unexpected or mis-shaped keys are one VoxcError naming them."""
    state = read_checkpoint(path)
    own = module.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    shaped = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_names(unexpected)}")
    if shaped:
        problems.append("mis-shaped " + ", ".join(f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
                                                   for k in sorted(shaped)[:4]))
    if problems:
        raise VoxcError(f"checkpoint {path} does not match model '{model}': {'; '.join(problems)}; "
                        "check the model name and --preset the checkpoint was trained with")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def save_safetensors(module: nn.Module, path: str | Path) -> None:
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))


def load_module(name: str, cfg: dict, path: str | Path) -> nn.Module:
    """A graph's module rebuilt from its config and its saved safetensors (a build's reference)."""
    from safetensors.torch import load_file

    from voxc.models.family import init_module
    module = init_module(name, cfg)
    module.load_state_dict(load_file(str(path)))
    return module.eval()
