"""Rotary encoding of hit geometry: attention scores that see Δφ and Δη between hits.

A query and a key rotated pairwise by angles f·φ_i and f·φ_j have the dot product
Σ_p |q_p||k_p| cos(θ_p + f_p (φ_i − φ_j)), a function of the *difference* of the hits' coordinates only
(rotary position embedding, Su et al. 2021, with hit φ [rad] and η instead of the token index). With a
ladder of frequencies f_p the heads can build a kernel that is sharp in Δφ and Δη — "hits that lie on a
straight line from the beam line" — which plain dot products of absolute-coordinate features express
poorly. φ frequencies are integers, so the encoding is exactly periodic across the ±π seam.

The first ``2·(phi_pairs + eta_pairs)`` dimensions of every head are rotated (φ pairs first); the rest of
the head is left as is, so content attention keeps its share. No parameters: a model trained with rotary
encoding must be run with the same frequencies (they are in the encoder's hyper-parameters).
"""

from __future__ import annotations

import torch
from torch import Tensor


def frequencies(pairs: int, max_frequency: float, *, integer: bool) -> list[float]:
    """``pairs`` frequencies spaced geometrically from 1 to ``max_frequency`` (rounded to integers for φ)."""
    if pairs <= 0:
        return []
    if pairs == 1:
        return [1.0]
    ratio = max_frequency ** (1.0 / (pairs - 1))
    out = [ratio**p for p in range(pairs)]
    return [float(round(f)) for f in out] if integer else out


class GeometricRotary(torch.nn.Module):
    """Rotates (N, H, D) queries / keys by hit φ [rad] and η.

    Args:
        phi_pairs, eta_pairs: dimension pairs per head rotated by φ and by η (2·(sum) ≤ head dim).
        phi_max_frequency: the largest φ frequency (rad⁻¹); 64 resolves Δφ ≈ 0.05 rad, the bend of a
            1 GeV track across the pixel layers in 2 T.
        eta_max_frequency: the largest η frequency.
    """

    def __init__(self, phi_pairs: int, eta_pairs: int, *, phi_max_frequency: float = 64.0,
                 eta_max_frequency: float = 32.0) -> None:
        super().__init__()
        if phi_pairs < 0 or eta_pairs < 0:
            raise ValueError(f"rotary pairs must be >= 0; got {phi_pairs}, {eta_pairs}")
        if phi_max_frequency < 1 or eta_max_frequency < 1:  # the ladders start at 1
            raise ValueError(f"rotary max frequencies must be >= 1; got {phi_max_frequency}, {eta_max_frequency}")
        freqs = (frequencies(phi_pairs, phi_max_frequency, integer=True)
                 + frequencies(eta_pairs, eta_max_frequency, integer=False))
        self.phi_pairs, self.eta_pairs = phi_pairs, eta_pairs
        self.register_buffer("freqs", torch.tensor(freqs, dtype=torch.float32), persistent=False)

    @property
    def pairs(self) -> int:
        return self.phi_pairs + self.eta_pairs

    def angles(self, phi: Tensor, eta: Tensor) -> tuple[Tensor, Tensor]:
        """(cos, sin), each (N, 1, P) float32, for hit φ [rad] and η of shape (N,)."""
        coord = torch.cat([phi.float()[:, None].expand(-1, self.phi_pairs),
                           eta.float()[:, None].expand(-1, self.eta_pairs)], 1)
        theta = coord * self.freqs
        return theta.cos()[:, None, :], theta.sin()[:, None, :]

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """(N, H, D) → (N, H, D) in x's dtype: pairs (2p, 2p+1), p < P, rotated by the angles."""
        p = self.pairs
        if p == 0:
            return x
        if 2 * p > x.shape[-1]:
            raise ValueError(f"rotary encoding of {p} pairs needs head dim >= {2 * p}; got {x.shape[-1]}")
        rot = x[..., : 2 * p].float().unflatten(-1, (p, 2))
        a, b = rot[..., 0], rot[..., 1]
        out = torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2).to(x.dtype)
        return torch.cat([out, x[..., 2 * p:]], -1)


def reference_rotate(x: Tensor, coords: list[float | Tensor], freqs: list[float]) -> Tensor:
    """Plain per-pair loop (tests): pair p of every row rotated by freqs[p]·coords[p] (a scalar per row)."""
    out = x.double().clone()
    for p, (c, f) in enumerate(zip(coords, freqs)):
        t = (torch.as_tensor(c, dtype=torch.float64) * f)[:, None]
        a, b = x[..., 2 * p].double(), x[..., 2 * p + 1].double()
        out[..., 2 * p] = a * torch.cos(t) - b * torch.sin(t)
        out[..., 2 * p + 1] = a * torch.sin(t) + b * torch.cos(t)
    return out
