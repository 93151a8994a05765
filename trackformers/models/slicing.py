"""η-slices: attention windows that are local in (η, φ), not only in φ.

A φ-sorted window of ±w hits covers every η at once: at μ = 200 (≈ 57k pixel hits) ±128 hits span only
±0.014 rad. Cutting each event into S slices of hit pseudorapidity η (from the origin) and φ-sorting each
slice as its own packed segment makes the same ±w window span S times more φ, among hits of similar η. A
track's hits do not share one η exactly (the beam spot's σ_z ≈ 55 mm moves the innermost hits' η by up to
~1.5), so the slices are wide (8 / S units of η) and alternate layers use slice edges shifted by half a
slice: a hit range that straddles an edge in one layout lies inside one slice of the other.

Slice index of a hit for shift ``parity`` (0 or 1): ``floor((clamp(η, −R, R) + R) / width + parity / 2)``,
with R = ``eta_range`` and width = 2R / S; parity 0 gives S slices, parity 1 gives S + 1 (half slices at both
ends). Segments are (event, slice) pairs in that order, so every segment lies inside its event and the
attention backends treat it exactly like an event (circular φ window within the segment).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trackformers.attention import AttentionLayout
from trackformers.attention.sorting import event_ids, invert_permutation, segment_phi_order


@dataclass
class SlicedOrder:
    """One (event, η-slice, φ) ordering of a packed batch.

    Attributes:
        perm: (N,) int64, sorted position → original hit position.
        inverse: (N,) int64, original position → sorted position.
        layout: attention layout whose ``cu_seqlens`` are the (event, slice) segments (empty ones kept).
    """

    perm: torch.Tensor
    inverse: torch.Tensor
    layout: AttentionLayout


def slice_index(eta: torch.Tensor, *, slices: int, parity: int, eta_range: float = 4.0) -> torch.Tensor:
    """(N,) int64 η-slice of every hit (see the module docstring); η dimensionless, any shape."""
    width = 2.0 * eta_range / slices
    e = eta.float().clamp(-eta_range, eta_range)
    idx = torch.floor((e + eta_range) / width + 0.5 * parity).long()
    return idx.clamp_(0, slices - 1 + parity)  # η = +R exactly falls on the upper edge


def sliced_segments(phi: torch.Tensor, eta: torch.Tensor, cu_seqlens: torch.Tensor, *, slices: int,
                    parity: int, eta_range: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(perm (N,) int64, segment offsets (E·(S + parity) + 1,) int32) of the (event, η-slice, φ) order, with
    no host synchronisation (the contrastive loss needs no layout). Arguments as :func:`sliced_order`."""
    per_event = slices + parity
    n_events = cu_seqlens.numel() - 1
    event = event_ids(cu_seqlens.to(phi.device), phi.numel())
    segment = event * per_event + slice_index(eta, slices=slices, parity=parity, eta_range=eta_range)
    counts = torch.bincount(segment, minlength=n_events * per_event)
    seg_cu = torch.zeros(counts.numel() + 1, dtype=torch.int32, device=phi.device)
    seg_cu[1:] = torch.cumsum(counts, 0)
    return segment_phi_order(phi, segment), seg_cu


def sliced_order(phi: torch.Tensor, eta: torch.Tensor, cu_seqlens: torch.Tensor, *, slices: int,
                 parity: int, window: int | None, eta_range: float = 4.0) -> SlicedOrder:
    """Sort packed hits by (event, η-slice, φ) and build the segment layout.

    Args:
        phi: (N,) hit azimuth [rad]; eta: (N,) hit pseudorapidity, both in the original packed order.
        cu_seqlens: (E + 1,) int event offsets. slices: S ≥ 1. parity: 0 or 1 (half-slice shift).
        window: attention half-width in sorted positions within a segment (None = whole segment).
    """
    perm, seg_cu = sliced_segments(phi, eta, cu_seqlens, slices=slices, parity=parity, eta_range=eta_range)
    lengths = seg_cu[1:] - seg_cu[:-1]
    max_len = int(lengths.max()) if lengths.numel() else 0  # one host sync per ordering, like batch.max_seqlen
    layout = AttentionLayout(cu_seqlens=seg_cu, max_seqlen=max_len, window=window)
    return SlicedOrder(perm=perm, inverse=invert_permutation(perm), layout=layout)
