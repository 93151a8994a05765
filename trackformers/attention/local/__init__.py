"""The ``local`` attention backend: fused Triton kernels for circular-window attention over packed events
(CUDA, or Triton's interpreter when ``TRITON_INTERPRET=1``), and a banded plain-torch version on other CPUs.

Registers itself with :func:`trackformers.attention.api.register` at import. Triton is imported only when the
backend runs, so this package imports (and ``can_run`` answers) where Triton is absent. Design notes:
docs/local_attention.md.
"""

from __future__ import annotations

import importlib.util

import torch

from trackformers.attention.api import AttentionLayout, register
from trackformers.attention.local.config import interpreting

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def can_run(q: torch.Tensor, layout: AttentionLayout, needs_grad: bool) -> str | None:
    """None if the backend can run this call, else why not (one sentence).

    On a CPU without ``TRITON_INTERPRET=1`` the same function runs in plain torch (:mod:`.band`).
    """
    if layout.cone is not None:
        return "the ΔR cone mask is not implemented in the local kernel (use flex or reference)"
    if q.device.type == "cpu" and not interpreting():
        return None if q.dtype.is_floating_point else f"needs a floating-point dtype; got {q.dtype}"
    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed"
    if q.device.type != "cuda" and not (q.device.type == "cpu" and interpreting()):
        return f"needs a CUDA device (or TRITON_INTERPRET=1 on CPU); q is on {q.device}"
    if q.dtype not in DTYPES:
        return f"dtype {q.dtype} not supported; expected float32, float16 or bfloat16"
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        return "bfloat16 is not supported by Triton's CPU interpreter"
    if q.shape[-1] not in HEAD_DIMS:
        return f"head dim {q.shape[-1]} not supported; expected one of {HEAD_DIMS}"
    if layout.cone is not None:
        return "the ΔR cone mask is not implemented in the local kernel (use flex or reference)"
    return None


def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
        scale: float) -> torch.Tensor:
    """Backend entry point: (N_total, H, D) q, k, v → (N_total, H, D)."""
    if v.shape != q.shape:
        raise ValueError(f"local attention needs v of q's shape {tuple(q.shape)}; got {tuple(v.shape)}")
    if q.device.type == "cpu" and not interpreting():  # no Triton on this CPU path: the banded torch version
        from trackformers.attention.local.band import band_attention

        return band_attention(q.contiguous(), k.contiguous(), v.contiguous(), layout, scale)
    from trackformers.attention.local.function import local_attention

    return local_attention(q, k, v, layout.cu_seqlens, layout.max_seqlen, layout.window, scale,
                           layout.groups)


register("local", run, can_run)
