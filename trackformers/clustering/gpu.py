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
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from trackformers.clustering.protocol import check_inputs, register

#: Elements of one block's distance matrix (64 MiB in fp32); sets the block size.
_MAX_ELEMENTS = 1 << 24


def _sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """``(len(a), len(b))`` squared distances by one fused matrix product (the fast path on every device)."""
    return torch.addmm((b * b).sum(1)[None, :], a, b.T, alpha=-2.0).add_((a * a).sum(1)[:, None])


def _keep_k_nearest(src: Tensor, dst: Tensor, d2: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per source hit, the ``k`` edges of smallest ``d2`` (ties: lower position offset first)."""
    order = torch.argsort(d2, stable=True)
    order = order[torch.argsort(src[order], stable=True)]
    src, dst = src[order], dst[order]
    counts = torch.bincount(src)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(src), device=src.device) - starts[src]
    keep = rank < k
    return src[keep], dst[keep]


def window_graph(x: Tensor, radius: float, window: int | None = None, k: int | None = None,
                 max_elements: int = _MAX_ELEMENTS) -> tuple[Tensor, Tensor]:
    """Edges between hits within ``window`` positions (cyclic) and ``radius`` (embedding units).

    Rows are processed in blocks of ``B`` consecutive positions; a block's candidates are the contiguous
    band ``[start - window, end + window)`` (cyclic), so the distances are one ``(B, B + 2·window)`` matrix
    product and the work is O(N·window·D).

    Args:
        x: ``(N, D)`` embedding, rows in φ order.
        radius: link hits at distance <= radius.
        window: candidate positions on each side (None = all hits).
        k: keep at most the k nearest linked candidates per hit (None = all within radius).
        max_elements: bound on the block's distance matrix, which sets ``B``.
    Returns:
        ``(src, dst)`` int64 edge lists of the undirected graph.
    """
    n = x.shape[0]
    empty = torch.zeros(0, dtype=torch.int64, device=x.device)
    if n < 2:
        return empty, empty
    w = n if window is None else max(0, min(int(window), n))
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    r2 = float(radius) ** 2
    # Without k each undirected pair is needed once: only the forward side of the band.
    back = 0 if k is None else w
    span = back + w
    if x.device.type == "cuda":  # few large blocks: kernel launches cost more than the extra arithmetic
        block = int(((span * span + 4 * max_elements) ** 0.5 - span) / 2)
    else:  # blocks about as tall as the band is wide: at most 2x the band's arithmetic
        block = max(64, span)
    block = max(1, min(n, block, max_elements // max(1, span + 1)))
    srcs, dsts, d2s = [], [], []
    for s in range(0, n, block):
        e = min(n, s + block)
        full = (e - s) + span >= n  # the band wraps onto itself: take every position, cyclic distance
        lo = 0 if full else s - back
        cand = torch.arange(lo, n if full else e + w, device=x.device)
        d2 = _sq_dist(x[s:e], x[cand % n])
        a, b = torch.nonzero(d2 <= r2, as_tuple=True)  # sparse: the band test runs on these pairs only
        off = (b + lo) - (a + s)
        if full:
            fwd = off % n  # forward cyclic distance in 0..n-1
            keep = (fwd != 0) & ((fwd <= w) if k is None else ((fwd <= w) | (fwd >= n - w)))
        else:
            keep = (off != 0) & (off >= -back) & (off <= w)
        a, b = a[keep], b[keep]
        srcs.append(a + s)
        dsts.append(cand[b] % n)
        d2s.append(d2[a, b])
    src, dst = torch.cat(srcs), torch.cat(dsts)
    if k is not None:
        src, dst = _keep_k_nearest(src, dst, torch.cat(d2s), int(k))
    return src, dst


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


def _root_ids(labels: Tensor) -> Tensor:
    """Component labels (each a root's own index) → consecutive ids in O(N), without sorting."""
    roots = labels == torch.arange(len(labels), device=labels.device)
    return (torch.cumsum(roots.to(torch.int64), 0) - 1)[labels]


@dataclass
class GPUClusterer:
    """Connected components of the windowed radius/kNN graph, all in torch on ``x``'s device.

    Args:
        radius: link distance in the embedding.
        k: at most this many links per hit (None = every candidate within radius).
        window: candidate positions on each side in φ order (None = all hits: exact radius graph).
        max_elements: working-tensor bound per chunk (memory knob for huge events).
    """

    #: Tells the task to pass each hit's φ, so the rows can be φ-sorted here whatever their order.
    uses_phi: ClassVar[bool] = True
    radius: float = 0.2
    k: int | None = None
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
        labels = _root_ids(connected_components(src, dst, n))
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
