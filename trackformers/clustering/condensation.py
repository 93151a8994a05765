"""Object-condensation track building: condensation points by β, hits joined within a radius.

The classic algorithm (Kieseler 2020) walks the hits by decreasing β: an unassigned hit with β > ``t_beta``
becomes a condensation point and takes every unassigned hit closer than ``t_d`` in cluster space. That is a
non-maximum suppression, done here in torch without a per-point Python loop:

1. candidates (β > t_beta) sorted by β, processed in blocks; a candidate survives iff no accepted point of an
   earlier block and no surviving earlier candidate of its own block lies within ``t_d`` (the in-block
   dependency is triangular, so a fixed-point iteration reaches the one sequential answer);
2. each hit joins the first (highest-β) accepted point within ``t_d``; the others become singletons.

:func:`reference_condensation` is the plain sequential loop the tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from trackformers.clustering.protocol import check_inputs, compact, register
from trackformers.errors import InputError

#: Largest distance matrix built at once (elements); bounds memory on huge events.
_MAX_ELEMENTS = 1 << 24


def _min_dist(a: Tensor, b: Tensor) -> Tensor:
    """``(len(a),)`` distance from each row of ``a`` to its nearest row of ``b`` (b non-empty), chunked."""
    step = max(1, _MAX_ELEMENTS // max(1, len(a)))
    out = torch.full((len(a),), float("inf"), dtype=a.dtype, device=a.device)
    for s in range(0, len(b), step):
        out = torch.minimum(out, torch.cdist(a, b[s:s + step]).min(1).values)
    return out


@dataclass
class CondensationClusterer:
    """Condensation-point assignment for object-condensation outputs.

    Args:
        t_beta: a hit may become a condensation point only if its β exceeds this (β in [0, 1]).
        t_d: hits closer than this to a condensation point (cluster-space units) join its track.
        block: candidates resolved together in one fixed-point step.
    """

    t_beta: float = 0.5
    t_d: float = 0.5
    block: int = 512

    def __call__(self, x: Tensor, *, beta: Tensor | None = None) -> Tensor:
        check_inputs(x, beta, "CondensationClusterer")
        if beta is None:
            raise InputError("CondensationClusterer: beta is None; expected the per-hit condensation "
                             "strength (N,) from an object-condensation model.")
        n = x.shape[0]
        # float64 inputs stay float64 (the tests compare with a float64 reference); others run in fp32.
        x = x.detach() if x.dtype == torch.float64 else x.detach().float()
        beta = beta.detach().float()
        order = torch.argsort(beta, descending=True, stable=True)
        cand = order[beta[order] > self.t_beta]
        accepted = cand[:0]
        for s in range(0, len(cand), self.block):
            c = cand[s:s + self.block]
            xc = x[c]
            alive = torch.ones(len(c), dtype=torch.bool, device=x.device)
            if len(accepted):
                alive = _min_dist(xc, x[accepted]) >= self.t_d
            # adj[i, j]: earlier candidate j (j < i) would take candidate i.
            adj = (torch.cdist(xc, xc) < self.t_d).tril(-1)
            keep = alive
            while True:
                new = alive & ~(adj & keep[None, :]).any(1)
                if torch.equal(new, keep):
                    break
                keep = new
            accepted = torch.cat([accepted, c[keep]])
        labels = torch.full((n,), -1, dtype=torch.int64, device=x.device)
        if len(accepted):
            xa = x[accepted]
            step = max(1, _MAX_ELEMENTS // len(accepted))
            for s in range(0, n, step):
                within = torch.cdist(x[s:s + step], xa) < self.t_d
                first = within.to(torch.uint8).argmax(1)  # index of the highest-β point in range
                labels[s:s + step] = torch.where(within.any(1), first, -1)
        return compact(labels)


def reference_condensation(x: np.ndarray, beta: np.ndarray, t_beta: float, t_d: float) -> np.ndarray:
    """The sequential algorithm, one condensation point at a time (for tests); labels with -1 = noise."""
    n = len(x)
    labels = np.full(n, -1, dtype=np.int64)
    k = 0
    for i in np.argsort(-beta, kind="stable"):
        if beta[i] <= t_beta or labels[i] >= 0:
            continue
        d = np.sqrt(((x - x[i]) ** 2).sum(1))
        labels[(labels < 0) & (d < t_d)] = k
        k += 1
    return labels


register("condensation", CondensationClusterer)
