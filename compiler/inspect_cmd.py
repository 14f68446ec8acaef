"""`voxc inspect PATH`: a readable summary of an ONNX file (IO, dynamic dims, op histogram) or a target folder."""
from __future__ import annotations

from pathlib import Path

import onnx

from voxc.compiler.onnx_info import graph_facts, io_summary
from voxc.core.errors import VoxcError
from voxc.core.target import is_target, read


def inspect_path(path: Path) -> str:
    if path.is_dir():
        if not is_target(path):
            raise VoxcError(f"{path} is not a built target (no manifest); run voxc build first")
        m = read(path).manifest
        lines = [f"target {m.target} (voxc {m.doc.get('voxc_version')}, preset {m.preset})"]
        for name, info in m.models.items():
            lines.append(f"  {name}: parity {info.parity}; " + ", ".join(
                f"{a.path} ({a.bytes / 1e6:.2f} MB, {a.precision})" for a in info.artifacts))
        return "\n".join(lines)
    if not path.is_file():
        raise VoxcError(f"{path} does not exist; pass an .onnx file or a target folder such as artifacts/cpu")
    try:
        model = onnx.load(str(path))
    except Exception:
        raise VoxcError(f"{path} is not a readable ONNX model") from None
    io, facts = io_summary(model), graph_facts(model)
    lines = [f"{path} (opset {facts['opset']}, {facts['nodes']} nodes)"]
    for side in ("inputs", "outputs"):
        lines.append(f"{side}:")
        for v in io[side]:
            dyn = [d for d in v["dims"] if isinstance(d, str)]
            lines.append(f"  {v['name']:<20} {v['dtype']:<8} {v['dims']}" + (f"  dynamic: {', '.join(dyn)}" if dyn else ""))
    lines.append("ops: " + ", ".join(f"{k} {v}" for k, v in sorted(facts["ops"].items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)
