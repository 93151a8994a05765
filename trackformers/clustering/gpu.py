"""Track building that never leaves the device: a windowed radius/kNN graph, then connected components.

Hits arrive φ-sorted (the encoder's order), so hits of one track sit close together in that order. Each hit's
candidate neighbours are the positions within ``±window`` of it, cyclically (φ wraps at ±π, so the first and
last hits of the order are neighbours). Candidates closer than ``radius`` in the embedding are linked (at most
the ``k`` nearest per hit when ``k`` is set). The graph is built in row chunks, so memory stays
O(chunk·window·D + N·k) instead of O(N²). Components are found by min-label propagation (``scatter_reduce``
with ``amin`` over the edges) plus pointer jumping, iterated until no label changes; everything is torch on
``x``'s device, CPU included.

:func:`reference_window_clusters` is the plain NumPy/SciPy version the tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from trackformers.clustering.protocol import check_inputs, compact, register

#: Elements of the (chunk, candidates, D) difference tensor built at once (64 MiB in fp32).
_MAX_ELEMENTS = 1 << 24


def _offsets(n: int, window: int | None, both_sides: bool, device: torch.device) -> Tensor:
    """Cyclic position offsets to the candidate neighbours, each other position at most once."""
    w = n - 1 if window is None else min(int(window), n - 1)
    if not both_sides:
        return torch.arange(1, w + 1, device=device)
    if 2 * w >= n - 1:  # the two sides overlap: every other hit is a candidate, once
        return torch.arange(1, n, device=device)
    return torch.cat([torch.arange(-w, 0, device=device), torch.arange(1, w + 1, device=device)])


def window_graph(x: Tensor, radius: float, window: int | None = None, k: int | None = None,
                 max_elements: int = _MAX_ELEMENTS) -> tuple[Tensor, Tensor]:
    """Edges between hits within ``window`` positions (cyclic) and ``radius`` (embedding units).

    Args:
        x: ``(N, D)`` embedding, rows in φ order.
        radius: link hits at distance <= radius.
        window: candidate positions on each side (None = all hits).
        k: keep at most the k nearest linked candidates per hit (None = all within radius).
        max_elements: bound on the working tensor, which sets the chunk size.
    Returns:
        ``(src, dst)`` int64 edge lists (undirected; a pair may appear twice).
    """
    n, d = x.shape
    empty = torch.zeros(0, dtype=torch.int64, device=x.device)
    if n < 2:
        return empty, empty
    off = _offsets(n, window, both_sides=k is not None, device=x.device)
    rows = max(1, max_elements // (len(off) * max(d, 1)))
    r2 = float(radius) ** 2
    srcs, dsts = [], []
    for s in range(0, n, rows):
        i = torch.arange(s, min(n, s + rows), device=x.device)
        j = (i[:, None] + off[None, :]) % n
        d2 = ((x[i][:, None, :] - x[j]) ** 2).sum(-1)  # (chunk, candidates)
        if k is None:
            a, b = torch.nonzero(d2 <= r2, as_tuple=True)
            srcs.append(i[a])
            dsts.append(j[a, b])
        else:
            d2 = d2.masked_fill(d2 > r2, float("inf"))
            vals, pos = torch.topk(d2, min(int(k), d2.shape[1]), dim=1, largest=False)
            ok = torch.isfinite(vals)
            srcs.append(i[:, None].expand_as(pos)[ok])
            dsts.append(j.gather(1, pos)[ok])
    return torch.cat(srcs), torch.cat(dsts)


def connected_components(src: Tensor, dst: Tensor, n: int) -> Tensor:
    """``(n,)`` int64 component ids (the smallest node index of each component) of an undirected graph.

    Min-label propagation with pointer jumping: every label is always a node of the same component and
    never grows, so the loop ends, and at the fixed point each component carries one label.
    """
    labels = torch.arange(n, dtype=torch.int64, device=src.device)
    if len(src) == 0:
        return labels
    while True:
        low = torch.minimum(labels[src], labels[dst])
        new = labels.scatter_reduce(0, src, low, reduce="amin").scatter_reduce(0, dst, low, reduce="amin")
        new = new[new]  # pointer jumping: follow the label's own label
        if torch.equal(new, labels):
            return labels
        labels = new


@dataclass
class GPUClusterer:
    """Connected components of the windowed radius/kNN graph, all in torch on ``x``'s device.

    Args:
        radius: link distance in the embedding.
        k: at most this many links per hit (None = every candidate within radius).
        window: candidate positions on each side in φ order (None = all hits: exact radius graph).
        max_elements: working-tensor bound per chunk (memory knob for huge events).
    """

    radius: float = 0.2
    k: int | None = 32
    window: int | None = 1024
    max_elements: int = _MAX_ELEMENTS

    def __call__(self, x: Tensor, *, beta: Tensor | None = None, phi: Tensor | None = None) -> Tensor:
        """Labels ``(N,)`` int64; pass ``phi`` ``(N,)`` (rad) when the rows are not already φ-sorted."""
        check_inputs(x, beta, "GPUClusterer")
        n = x.shape[0]
        x = x.detach()
        order = None
        if phi is not None:
            order = torch.argsort(phi.detach(), stable=True)
            x = x[order]
        src, dst = window_graph(x, self.radius, self.window, self.k, self.max_elements)
        labels = compact(connected_components(src, dst, n))
        if order is not None:
            labels = torch.empty_like(labels).scatter_(0, order, labels)
        return labels


def reference_window_clusters(x: np.ndarray, radius: float, window: int | None = None,
                              k: int | None = None) -> np.ndarray:
    """Plain reference of :class:`GPUClusterer`: per-hit loops, then SciPy connected components."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_cc

    n = len(x)
    src, dst = [], []
    for i in range(n):
        cyc = np.abs(np.arange(n) - i)
        cyc = np.minimum(cyc, n - cyc)
        cand = np.nonzero((cyc > 0) & (cyc <= (n if window is None else window)))[0]
        dist = np.sqrt(((x[cand] - x[i]) ** 2).sum(1))
        cand, dist = cand[dist <= radius], dist[dist <= radius]
        if k is not None:
            cand = cand[np.argsort(dist, kind="stable")[:k]]
        src.extend([i] * len(cand))
        dst.extend(cand.tolist())
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    return scipy_cc(graph, directed=False)[1].astype(np.int64)


register("gpu", GPUClusterer)
