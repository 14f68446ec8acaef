"""INT8 choices made from the graph itself: which op types to quantise, which layers hurt most, how many
of them to keep float.

- resolve_op_types: `op_types = "auto"` (a family's declaration, or a user's TOML) becomes the weighted
  layer types the exported graph contains (Conv and ConvTranspose for a HiFi-GAN; MatMul/Gemm for a
  transformer), so no graph inherits another's tuning by its name.
"""
from __future__ import annotations

QUANTISABLE = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def resolve_op_types(model, op_types) -> list[str]:
    """The op types to quantise: as given, or for "auto" the QUANTISABLE types present with a weight."""
    if op_types != "auto":
        return list(op_types)
    params = {i.name for i in model.graph.initializer}
    present = {n.op_type for n in model.graph.node if n.op_type in QUANTISABLE and any(i in params for i in n.input)}
    return [t for t in QUANTISABLE if t in present]
