"""Inference speed-up for the encoder's per-hit layers: ``torch.compile`` of its norms, MLPs and rotary encoding.

At μ = 200 (57k hits, d_model 128) most of the model's GPU time is element-wise work: an RMSNorm is eight
kernels (fp32 copy, square, mean, rsqrt, products, casts), the SwiGLU's gate two more, each a full pass over
(N, d_model). TorchInductor fuses each norm into one kernel and the gate into one (and the rotary (φ, η)
rotation of queries and keys, about ten element-wise passes per call eagerly, into one). Only these submodules are
compiled (plain tensor in, tensor out, no data-dependent control flow); attention and the rest stay eager,
so nothing of the attention backends is traced. Shapes are compiled dynamic: one compilation serves every
event length. The module's parameters and ``state_dict`` are untouched: the compiled callables replace the
submodules' ``forward`` attributes on the instances, and :func:`compile_pointwise` returns the undo.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

#: Submodule names compiled in each encoder block, and on the encoder itself.
BLOCK_PARTS: tuple[str, ...] = ("norm1", "norm2", "mlp")
ENCODER_PARTS: tuple[str, ...] = ("norm", "rotary")


def pointwise_parts(module: Any) -> list[nn.Module]:
    """The encoder's norms, MLPs and rotary module that :func:`compile_pointwise` compiles (those that exist)."""
    encoder = getattr(module, "encoder", module)
    parts = [getattr(block, name) for block in getattr(encoder, "blocks", []) for name in BLOCK_PARTS
             if isinstance(getattr(block, name, None), nn.Module)]
    parts += [getattr(encoder, name) for name in ENCODER_PARTS if isinstance(getattr(encoder, name, None), nn.Module)]
    return parts


def compile_pointwise(module: Any, **options: Any) -> Callable[[], None]:
    """Compile the per-hit parts of ``module.encoder`` in place (``torch.compile(..., dynamic=True)``).

    ``options`` go to ``torch.compile`` (e.g. ``mode``). Returns a function that restores the eager
    forwards. Compilation happens lazily at the first call (seconds); later calls of any length reuse it.
    """
    parts = pointwise_parts(module)
    options = {"dynamic": True, **options}
    for part in parts:
        part.forward = torch.compile(part.forward, **options)  # instance attribute: state_dict unchanged

    def undo() -> None:
        for part in parts:
            if "forward" in vars(part):
                del part.forward

    return undo
