"""φ-sorting of packed events: the permutation that makes attention windows local in φ, and its inverse.

The attention backends expect each event's hits sorted by φ (the window is a circular band in sorted
positions). Sorting and un-sorting are done here, once per batch, never inside the kernels.
"""

from __future__ import annotations

import torch


def event_ids(cu_seqlens: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """(N,) int64 event index of every packed position, from (E + 1,) offsets ``cu_seqlens``.

    ``n`` (= ``cu_seqlens[-1]``) may be given to avoid a device synchronisation.
    """
    cu = cu_seqlens.to(torch.int64)
    lengths = cu[1:] - cu[:-1]
    if n is None:
        n = int(cu[-1]) if cu.numel() else 0
    return torch.repeat_interleave(torch.arange(lengths.numel(), device=cu.device), lengths, output_size=n)


def phi_sort(phi: torch.Tensor, cu_seqlens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation sorting each packed event by φ, and its inverse.

    Args:
        phi: (N,) float azimuth [rad] of the packed hits.
        cu_seqlens: (E + 1,) int event offsets into the packed dimension.

    Returns:
        perm: (N,) int64 such that ``x[perm]`` has every event's hits in increasing φ (events stay in
            place: ``perm[cu[e]:cu[e+1]]`` is a permutation of ``range(cu[e], cu[e+1])``). Ties keep their
            input order (stable), so the result is deterministic.
        inverse: (N,) int64 with ``x[perm][inverse] == x``.
    """
    if phi.dim() != 1:
        raise ValueError(f"phi must be 1-D (N,); got shape {tuple(phi.shape)}")
    n = phi.numel()
    if cu_seqlens.numel() == 0 or int(cu_seqlens[-1]) != n or int(cu_seqlens[0]) != 0:
        raise ValueError(f"cu_seqlens must run from 0 to len(phi) = {n}; got {cu_seqlens.tolist()}")
    perm = segment_phi_order(phi, event_ids(cu_seqlens.to(phi.device), n))
    return perm, invert_permutation(perm)


def segment_phi_order(phi: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
    """(N,) int64 permutation sorting hits by (segment, φ); ties keep their input order (deterministic).

    ``segment``: (N,) integer segment id per hit (an event, or an (event, η-slice) pair).
    """
    # Two stable sorts = one lexicographic sort: first by φ, then by segment.
    by_phi = torch.argsort(phi, stable=True)
    return by_phi[torch.argsort(segment[by_phi], stable=True)]


def invert_permutation(perm: torch.Tensor) -> torch.Tensor:
    """(N,) int64 inverse of the permutation ``perm``: ``inverse[perm] = arange(N)``."""
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel(), device=perm.device, dtype=perm.dtype)
    return inverse
