"""Track building that never leaves the device: a windowed radius/kNN graph, then connected components.

Hits arrive φ-sorted (the encoder's order), so hits of one track sit close together in that order. Each hit's
candidate neighbours are the positions within ``±window`` of it, cyclically (φ wraps at ±π, so the first and
last hits of the order are neighbours). Candidates closer than ``radius`` in the embedding are linked (at most
the ``k`` nearest per hit when ``k`` is set). Without ``k`` the graph is built band-wise: rows in blocks of
``R`` consecutive positions, each block against the ``R + window`` positions after its start in one batched
matrix product, the forward band (offsets 1..window) cut out of the result by a strided view; a few blocks
per launch and one ``nonzero`` per filled buffer, so a 57k-hit event costs a few dozen kernels and one host
synchronisation. Components are found by Shiloach–Vishkin-style hooking (``scatter_reduce`` with ``amin``,
on the endpoints and on their labels) plus pointer jumping, a few rounds between convergence checks;
everything is torch on ``x``'s device, CPU included, and memory stays O(chunk + N·window/8 + edges).

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


def _band_edges(x: Tensor, r2: float, w: int, max_elements: int) -> tuple[Tensor, Tensor]:
    """Forward-band edges ``(i, (i + o) mod N)``, ``1 <= o <= w``, with squared distance <= ``r2``.

    Every pair within cyclic distance ``w`` is one forward offset of one of its ends, so for ``w < N``
    these edges are the whole windowed radius graph. Rows go in blocks of ``R`` positions; block ``b``
    meets the ``R + w`` positions from ``b·R`` on (indices mod N), and row ``i`` of the block's
    ``(R, R + w)`` distance matrix holds offset ``o`` at column ``i + o``: the band is the strided view
    ``(R, w)`` with row stride ``R + w + 1``. Band masks collect in a bool buffer; one ``nonzero`` per
    full buffer (one for a whole 57k-hit event at the default bound) turns them into edges.
    """
    n, dim = x.shape
    rows = max(1, min(w, int(((w * w + 4 * max_elements) ** 0.5 - w) / 2)))  # R·(R + w) <= max_elements
    width = rows + w
    n_blocks = -(-n // rows)
    per_launch = max(1, max_elements // (rows * width))
    per_flush = max(per_launch, (4 * max_elements) // (rows * w))
    ext = x[torch.arange(n_blocks * rows + w, device=x.device) % n]  # positions past N wrap around
    sq = (ext * ext).sum(1)
    buf = torch.empty((min(per_flush, n_blocks), rows, w), dtype=torch.bool, device=x.device)
    srcs, dsts = [], []
    filled, first = 0, 0  # blocks in the buffer; index of its first block

    def flush() -> None:
        if n_blocks * rows > n and first + filled == n_blocks:  # rows past N in the last block are padding
            buf[filled - 1, n - (n_blocks - 1) * rows:] = False
        b, i, o = torch.nonzero(buf[:filled], as_tuple=True)
        src = (b + first) * rows + i
        srcs.append(src)
        dsts.append((src + o + 1) % n)

    for b0 in range(0, n_blocks, per_launch):
        b1 = min(n_blocks, b0 + per_launch)
        q = ext[b0 * rows:b1 * rows].view(b1 - b0, rows, dim)
        cand = ext.as_strided((b1 - b0, width, dim), (rows * dim, dim, 1), b0 * rows * dim)
        cand_sq = sq.as_strided((b1 - b0, 1, width), (rows, width, 1), b0 * rows)
        # Same arithmetic as _sq_dist: (|b|² - 2 a·b) + |a|², in x's dtype.
        d2 = torch.baddbmm(cand_sq, q, cand.transpose(1, 2), alpha=-2.0)
        d2.add_(sq[b0 * rows:b1 * rows].view(b1 - b0, rows, 1))
        hit = d2 <= r2
        band = hit.as_strided((b1 - b0, rows, w), (rows * width, width + 1, 1), 1)
        if filled + (b1 - b0) > buf.shape[0]:
            flush()
            first, filled = b0, 0
        buf[filled:filled + (b1 - b0)] = band
        filled += b1 - b0
    flush()
    return torch.cat(srcs), torch.cat(dsts)


def window_graph(x: Tensor, radius: float, window: int | None = None, k: int | None = None,
                 max_elements: int = _MAX_ELEMENTS) -> tuple[Tensor, Tensor]:
    """Edges between hits within ``window`` positions (cyclic) and ``radius`` (embedding units).

    Without ``k``: :func:`_band_edges` (each undirected pair once, as a forward offset, when
    ``2·window < N``). With ``k``:
    rows in blocks of ``B`` consecutive positions, a block's candidates the contiguous band
    ``[start - window, end + window)`` (cyclic), then the ``k`` nearest linked candidates per hit.

    Args:
        x: ``(N, D)`` embedding, rows in φ order.
        radius: link hits at distance <= radius.
        window: candidate positions on each side (None = all hits).
        k: keep at most the k nearest linked candidates per hit (None = all within radius).
        max_elements: bound on one launch's distance matrices, which sets the block sizes.
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
    if k is None:
        return _band_edges(x, r2, min(w, n - 1), max_elements) if w > 0 else (empty, empty)
    return _knn_window_graph(x, r2, w, int(k), max_elements)


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
_ROUNDS_PER_CHECK = 2


def connected_components(src: Tensor, dst: Tensor, n: int) -> Tensor:
    """``(n,)`` int64 component ids (the smallest node index of each component) of an undirected graph.

    Each round hooks, for every edge (u, v) with labels (f_u, f_v): the label of f_u's and f_v's trees
    (``f[f_u] = min(f[f_u], f_v)`` and vice versa) and the endpoints themselves (``f[u] = min(f[u], f_v)``),
    then jumps pointers twice (``f = f[f]``). Labels are always nodes of the same component and never grow;
    the loop stops when every edge joins equal labels and ``f`` is a star, which makes each component's
    label its smallest node. A scrambled 1000-node path takes ~8 rounds (plain min-label propagation:
    hundreds); a μ = 200 event's graph 5.
    """
    labels = torch.arange(n, dtype=torch.int64, device=src.device)
    if len(src) == 0:
        return labels
    while True:
        for _ in range(_ROUNDS_PER_CHECK):
            fu, fv = labels[src], labels[dst]
            low = torch.minimum(fu, fv)
            labels = labels.scatter_reduce(0, fu, fv, reduce="amin").scatter_reduce(0, fv, fu, reduce="amin")
            labels = labels.scatter_reduce(0, src, low, reduce="amin").scatter_reduce(0, dst, low, reduce="amin")
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
