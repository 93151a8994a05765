"""The ``flex`` backend: compiled FlexAttention over the packed batch as ONE sequence with a document mask.

q, k, v (N_total, H, D) are zero-padded to a bucketed length (:func:`.flex_mask.padded_length`) so that
varying event sizes reuse a few compiled kernels; padding belongs to no event and is masked. The BlockMask is
built from block indices (:mod:`.flex_mask`), never by evaluating the mask on N² pairs.

FlexAttention must run compiled on GPU (eager materialises the (H, N, N) scores). On CPU it has no backward,
so this backend is inference-only there; small CPU calls run eagerly (compiling costs ~15 s per shape), large
ones compiled.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from trackformers.attention.api import AttentionLayout, register
from trackformers.attention.dense import empty_output
from trackformers.attention.flex_mask import (
    build_block_mask,
    build_block_mask_eager,
    padded_length,
    total_length,
)

__all__ = ["build_block_mask", "build_block_mask_eager", "flex_attention_with_mask", "padded_length",
           "flex_backend"]

#: Distinct compiled graphs Dynamo may keep for flex (buckets × dtypes × mask variants × grad/no-grad);
#: past its limit Dynamo would silently fall back to the eager, N² path.
CACHE_SIZE_LIMIT = 256
#: On CPU, calls whose eager score matrix H · n_pad² stays below this run eagerly (no compile wait).
CPU_EAGER_MAX_SCORES = 1 << 26
#: Head dims FlexAttention's kernels are used with here.
HEAD_DIMS = (16, 32, 64, 128, 256)

_compiled: Callable[..., torch.Tensor] | None = None


def _compiled_flex() -> Callable[..., torch.Tensor]:
    global _compiled
    if _compiled is None:
        cfg = torch._dynamo.config
        for name in ("cache_size_limit", "recompile_limit"):
            if hasattr(cfg, name):
                setattr(cfg, name, max(getattr(cfg, name), CACHE_SIZE_LIMIT))
        if hasattr(cfg, "accumulated_cache_size_limit"):
            cfg.accumulated_cache_size_limit = max(cfg.accumulated_cache_size_limit, 4 * CACHE_SIZE_LIMIT)
        # dynamic=False: one static kernel per bucket, never a slower symbolic-shape graph.
        _compiled = torch.compile(flex_attention, dynamic=False)
    return _compiled


def flex_attention_with_mask(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: BlockMask,
                             scale: float | None = None, *, compiled: bool | None = None) -> torch.Tensor:
    """FlexAttention of packed (N, H, D) q, k, v under a BlockMask of n_pad ≥ N positions.

    Returns (N, H, D_v), a view of the padded output. ``compiled`` defaults to True on GPU and, on CPU,
    to whether the eager score matrix would exceed :data:`CPU_EAGER_MAX_SCORES`.
    """
    n, heads = q.shape[0], q.shape[1]
    n_pad = block_mask.seq_lengths[0]
    if n > n_pad:
        raise ValueError(f"block mask covers {n_pad} positions but q has {n}")
    if compiled is None:
        compiled = q.device.type != "cpu" or heads * n_pad * n_pad > CPU_EAGER_MAX_SCORES

    def padded(t: torch.Tensor) -> torch.Tensor:  # (N, H, D) → (1, H, n_pad, D)
        return F.pad(t, (0, 0, 0, 0, 0, n_pad - n)).permute(1, 0, 2).unsqueeze(0)

    qp, kp, vp = padded(q), padded(k), padded(v)
    if compiled:
        out = _compiled_flex()(qp, kp, vp, block_mask=block_mask, scale=scale)
    else:
        with warnings.catch_warnings():  # the "unfused implementation" warning: intended for small CPU calls
            warnings.simplefilter("ignore", UserWarning)
            out = flex_attention(qp, kp, vp, block_mask=block_mask, scale=scale)
    return out[0, :, :n].transpose(0, 1)


def flex_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
                 scale: float) -> torch.Tensor:
    """The registered ``run``: mask build + attention (see :func:`build_block_mask`)."""
    n = total_length(layout)
    if n != q.shape[0]:
        raise ValueError(f"layout.cu_seqlens ends at {n} hits but q has {q.shape[0]} rows")
    if n == 0:
        return empty_output(q, k, v)
    return flex_attention_with_mask(q, k, v, build_block_mask(layout, q.device, padded_length(n)), scale)


def _can_run(q: torch.Tensor, layout: AttentionLayout, needs_grad: bool) -> str | None:
    on_cpu = q.device.type == "cpu"
    if on_cpu and needs_grad:
        return "flex has no CPU backward; use dense or local for training on CPU"
    if q.device.type not in ("cpu", "cuda"):
        return f"flex runs on CPU or CUDA; got device {q.device}"
    allowed = (torch.float32, torch.bfloat16, torch.float16)
    if q.dtype not in allowed:
        return f"flex supports float32, bfloat16 and float16; got {q.dtype}"
    if q.shape[-1] not in HEAD_DIMS:
        return f"flex needs head dim in {HEAD_DIMS}; got {q.shape[-1]}"
    if layout.cone is not None and layout.eta_phi is None:
        return "a ΔR cone needs layout.eta_phi"
    return None


register("flex", flex_backend, _can_run)
