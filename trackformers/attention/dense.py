"""The ``dense`` backend: ``torch.nn.functional.scaled_dot_product_attention`` per event, boolean mask.

The block-diagonal mask of the packed batch is never built: each event is attended separately with its own
(L, L) boolean mask (the window band, groups and ΔR cone, from :func:`.reference.event_mask`), so memory is
O(max L²) rather than O(N²). When the window covers the whole event and there are no extra masks, no mask is
passed at all and SDPA may pick its flash / memory-efficient kernels. CPU and GPU, any float dtype, autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trackformers.attention.api import AttentionLayout, register
from trackformers.attention.reference import event_mask

#: Largest (L, L) boolean mask this backend materialises for one event.
MAX_MASK_ELEMENTS = 1 << 28


def _needs_mask(layout: AttentionLayout, length: int) -> bool:
    window_cuts = layout.window is not None and 2 * layout.window + 1 < length
    return window_cuts or layout.has_extra_masks


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
                    scale: float) -> torch.Tensor:
    """Masked attention over a packed batch: q, k, v (N_total, H, D) → (N_total, H, D_v)."""
    cu = layout.cu_seqlens.tolist()
    pieces = []
    for start, end in zip(cu[:-1], cu[1:]):
        if end == start:
            continue
        # (1, H, L, D): SDPA's batch × heads layout; a view, SDPA copies if its kernel needs to.
        qe, ke, ve = (t[start:end].transpose(0, 1).unsqueeze(0) for t in (q, k, v))
        mask = event_mask(layout, start, end, q.device) if _needs_mask(layout, end - start) else None
        oe = F.scaled_dot_product_attention(qe, ke, ve, attn_mask=mask, scale=scale)
        pieces.append(oe[0].transpose(0, 1))
    if not pieces:  # N_total == 0: an empty output that still belongs to the autograd graph
        return empty_output(q, k, v)
    return torch.cat(pieces, 0) if len(pieces) > 1 else pieces[0].contiguous()


def empty_output(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(0, H, D_v) output for an empty batch, still connected to q, k, v in the autograd graph."""
    return v.new_zeros(0, v.shape[1], v.shape[2]) + (q.sum() + k.sum() + v.sum()) * 0


def _can_run(q: torch.Tensor, layout: AttentionLayout, needs_grad: bool) -> str | None:
    if not q.dtype.is_floating_point:
        return f"dense needs a floating-point dtype; got {q.dtype}"
    if layout.cone is not None and layout.eta_phi is None:
        return "a ΔR cone needs layout.eta_phi"
    if layout.max_seqlen**2 > MAX_MASK_ELEMENTS:
        return (f"dense materialises an L×L mask per event; longest event {layout.max_seqlen} hits gives "
                f"{layout.max_seqlen**2} > {MAX_MASK_ELEMENTS} elements (use flex or local)")
    return None


register("dense", dense_attention, _can_run)
