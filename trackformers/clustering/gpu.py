"""Track building that never leaves the device: a windowed radius/kNN graph, then connected components.

Hits arrive φ-sorted (the encoder's order), so hits of one track sit close together in that order. Each hit's
candidate neighbours are the positions within ``±window`` of it, cyclically (φ wraps at ±π, so the first and
last hits of the order are neighbours). Candidates closer than ``radius`` in the embedding are linked (at most
the ``k`` nearest per hit when ``k`` is set). Without ``k`` the graph is built band-wise from batched matrix
products, then each candidate's distance is recomputed exactly (:mod:`trackformers.clustering.band_graph`);
a 57k-hit event costs a few dozen kernels and one host synchronisation. Components are found by
Shiloach–Vishkin-style hooking (``scatter_reduce`` with ``amin``, on the endpoints and on their labels) plus
pointer jumping, three rounds between convergence checks; everything is torch on ``x``'s device, CPU
included, and memory stays O(chunk + N·window/8 + edges).

:func:`reference_window_clusters` is the plain NumPy/SciPy version the tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from trackformers.clustering.band_graph import band_candidates, band_edges
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
                 max_elements: int = _MAX_ELEMENTS, *, self_loops: bool = False) -> tuple[Tensor, Tensor]:
    """Edges between hits within ``window`` positions (cyclic) and ``radius`` (embedding units).

    Without ``k``: :func:`~trackformers.clustering.band_graph.band_edges` (each undirected pair once, as a
    forward offset, when ``2·window < N``). With ``k``: rows in blocks of ``B`` consecutive positions, a
    block's candidates the contiguous band ``[start - window, end + window)`` (cyclic), then the ``k``
    nearest linked candidates per hit.

    Args:
        x: ``(N, D)`` embedding, rows in φ order.
        radius: link hits at distance <= radius.
        window: candidate positions on each side (None = all hits).
        k: keep at most the k nearest linked candidates per hit (None = all within radius).
        max_elements: bound on one launch's distance matrices, which sets the block sizes.
        self_loops: without ``k``, return every candidate pair, those beyond the radius as self-loops
            ``(i, i)`` — the same connected components, no host synchronisation (the clusterer's choice).
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
    # Distances in x's precision even inside a caller's autocast region (bf16 products would link or
    # miss pairs near the radius).
    with torch.autocast(x.device.type, enabled=False):
        if k is not None:
            return _knn_window_graph(x, r2, w, int(k), max_elements)
        if w == 0:
            return empty, empty
        if not self_loops:
            return band_edges(x, r2, min(w, n - 1), max_elements)
        # Candidates beyond the radius become self-loops (harmless to connected components) instead of being
        # filtered out, which would cost a host synchronisation.
        src, dst, within = band_candidates(x, r2, min(w, n - 1), max_elements)
        return src, torch.where(within, dst, src)


def _knn_window_graph(x: Tensor, r2: float, w: int, k: int, max_elements: int) -> tuple[Tensor, Tensor]:
    """The ``k``-nearest version of :func:`window_graph`: both sides of the band, then ``k`` per hit."""
    n = x.shape[0]
    span = 2 * w
    if x.device.type == "cuda":  # few large blocks: kernel launches cost more than the extra arithmetic
        block = int(((span * span + 4 * max_elements) ** 0.5 - span) / 2)
    else:  # blocks about as tall as the band is wide: at most 2x the band's arithmetic
        block = max(64, span)
    block = max(1, min(n, block, max_elements // max(1, span + 1)))
    srcs, dsts, d2s = [], [], []
    for s in range(0, n, block):
        e = min(n, s + block)
        full = (e - s) + span >= n  # the band wraps onto itself: take every position, cyclic distance
        lo = 0 if full else s - w
        cand = torch.arange(lo, n if full else e + w, device=x.device)
        d2 = _sq_dist(x[s:e], x[cand % n])
        a, b = torch.nonzero(d2 <= r2, as_tuple=True)  # sparse: the band test runs on these pairs only
        off = (b + lo) - (a + s)
        if full:
            fwd = off % n  # forward cyclic distance in 0..n-1
            keep = (fwd != 0) & ((fwd <= w) | (fwd >= n - w))
        else:
            keep = (off != 0) & (off >= -w) & (off <= w)
        a, b = a[keep], b[keep]
        srcs.append(a + s)
        dsts.append(cand[b] % n)
        d2s.append(d2[a, b])
    return _keep_k_nearest(torch.cat(srcs), torch.cat(dsts), torch.cat(d2s), k)


#: Hooking rounds between two convergence checks (each check is one host synchronisation).
_ROUNDS_PER_CHECK = 3


def connected_components(src: Tensor, dst: Tensor, n: int) -> Tensor:
    """``(n,)`` int64 component ids (the smallest node index of each component) of an undirected graph.

    Each round, over both directions (u, v) of every edge with labels (f_u, f_v): hooks the tree of f_u
    under f_v where f_v < f_u (``f[f_u] = min(f[f_u], f_v)``) and the node itself (``f[u] = min(f[u], f_v)``),
    then jumps pointers twice (``f = f[f]``). Edges that would not lower a root write their own node's label
    to their own node instead (a no-op), so late rounds do not pile atomic updates onto one big root.
    Labels are always nodes of the same component and never grow; the loop stops when every edge joins
    equal labels and ``f`` is a star, which makes each component's label its smallest node. A scrambled
    1000-node path takes ~8 rounds (plain min-label propagation: hundreds); a μ = 200 event's graph 5.
    Self-loops and repeated edges are allowed.
    """
    labels = torch.arange(n, dtype=torch.int64, device=src.device)
    if len(src) == 0:
        return labels
    s, d = torch.cat([src, dst]), torch.cat([dst, src])
    while True:
        for _ in range(_ROUNDS_PER_CHECK):
            fs, fd = labels[s], labels[d]
            lower = fd < fs
            labels.scatter_reduce_(0, torch.where(lower, fs, s), torch.where(lower, fd, fs), reduce="amin")
            labels.scatter_reduce_(0, s, fd, reduce="amin")
            labels = labels[labels]  # two pointer jumps: f ← f∘f∘f∘f
            labels = labels[labels]
        jumped = labels[labels]
        if bool(((jumped[src] == jumped[dst]).all() & (jumped == labels).all()).item()):
            return labels
        labels = jumped


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
        src, dst = window_graph(x, self.radius, self.window, self.k, self.max_elements, self_loops=True)
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
