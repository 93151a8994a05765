"""The ``reference`` backend: plain torch, one materialised boolean mask per event. The test oracle.

Any dtype (float64 included), any device, autograd through plain ops. Memory O(L²) per event: small N only.
"""

from __future__ import annotations

import math

import torch

from trackformers.attention.api import AttentionLayout, register


def event_mask(layout: AttentionLayout, start: int, end: int, device: torch.device) -> torch.Tensor:
    """(L, L) bool mask of event [start, end): True where query (row) may attend to key (column)."""
    n = end - start
    idx = torch.arange(n, device=device)
    allowed = torch.ones(n, n, dtype=torch.bool, device=device)
    if layout.window is not None and 2 * layout.window + 1 < n:
        d = (idx[:, None] - idx[None, :]).abs()
        allowed &= torch.minimum(d, n - d) <= layout.window
    if layout.groups is not None:
        g = layout.groups[start:end].to(device)
        allowed &= g[:, None] == g[None, :]
    if layout.cone is not None:
        if layout.eta_phi is None:
            raise ValueError("a ΔR cone needs layout.eta_phi")
        ep = layout.eta_phi[start:end].to(device=device, dtype=torch.float64)
        deta = ep[:, None, 0] - ep[None, :, 0]
        dphi = torch.remainder(ep[:, None, 1] - ep[None, :, 1] + math.pi, 2 * math.pi) - math.pi
        allowed &= deta.square() + dphi.square() <= layout.cone**2
    return allowed


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
                        scale: float) -> torch.Tensor:
    """Softmax(q kᵀ · scale, masked) v per event; rows with no allowed key give zeros."""
    out = torch.zeros_like(q) if not (q.requires_grad or k.requires_grad or v.requires_grad) else None
    pieces = []
    cu = layout.cu_seqlens.tolist()
    for start, end in zip(cu[:-1], cu[1:]):
        if end == start:
            continue
        qe, ke, ve = (t[start:end].transpose(0, 1) for t in (q, k, v))  # (H, L, D)
        scores = torch.matmul(qe, ke.transpose(-1, -2)) * scale
        mask = event_mask(layout, start, end, q.device)
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores.float() if q.dtype in (torch.float16, torch.bfloat16) else scores, -1)
        probs = torch.nan_to_num(probs, nan=0.0).to(v.dtype)
        oe = torch.matmul(probs, ve).transpose(0, 1)
        if out is not None:
            out[start:end] = oe
        else:
            pieces.append(oe)
    if out is not None:
        return out
    return torch.cat(pieces, 0) if pieces else q.new_zeros(q.shape[0], q.shape[1], v.shape[-1])


def _can_run(q: torch.Tensor, layout: AttentionLayout, needs_grad: bool) -> str | None:
    if layout.max_seqlen > 16384:
        return f"the reference materialises L² masks; longest event {layout.max_seqlen} > 16384 hits"
    return None


register("reference", reference_attention, _can_run)
