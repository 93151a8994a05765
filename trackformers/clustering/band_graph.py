"""The windowed radius graph without ``k``: every pair of φ-ordered rows within ``w`` positions (cyclic) and
within the radius, built band-wise from batched matrix products.

Every pair within cyclic distance ``w`` is one forward offset ``o`` (1..w) of one of its ends, so the edges
``(i, (i + o) mod N)`` of all rows cover the graph (each pair once when ``2w < N``). Rows go in blocks of
``R ≈ w/4`` positions; block ``b`` meets the ``R + w`` positions from ``b·R`` on (indices mod N), and row
``i`` of the block's ``(R, R + w)`` matrix holds offset ``o`` at column ``i + o``: the band is the strided view
``(R, w)`` with row stride ``R + w + 1``. Band masks collect in a bool buffer; one ``nonzero`` per full
buffer (one for a 57k-hit event at the default bound) turns them into candidate edges.

Two steps make the result exact and independent of the matrix-product kernel (whose rounding depends on
shapes, devices and TF32 settings): the blocks test ``|b|² − 2a·b <= r² + margin − |a|²`` (one product with
``[a, 1]·[−2b, |b|²]``, no extra pass over the matrix), where the margin bounds that formula's rounding
error; then each candidate's squared distance is recomputed from the differences ``Σ (a − b)²``, and
candidates beyond ``r²`` are dropped (or, for the clusterer, turned into harmless self-loops).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _margin(x: Tensor, max_sq: Tensor) -> Tensor:
    """A bound on the rounding error of ``|b|² − 2a·b + |a|²`` (0-d tensor, no host sync).

    Each term's error is a few ulps of ``(D + 4)·max |x|²``; fp32 products may run in TF32 (10-bit
    mantissa) when the user allows it, so that precision is assumed then. Doubled for slack.
    """
    if x.dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        eps = 2.0**-10
    else:
        eps = torch.finfo(x.dtype).eps
    return max_sq * (8.0 * (x.shape[1] + 4) * eps)


def band_candidates(x: Tensor, r2: float, w: int, max_elements: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(src, dst, within)``: forward-band candidate edges and whether each is within ``r2``.

    Candidates are every pair the blocks' test passed (a superset of the edges); ``within`` is the exact
    test on the recomputed squared distance. Needs ``1 <= w < N``.
    """
    n, dim = x.shape
    rows = max(1, min(-(-w // 4), int(((w * w + 4 * max_elements) ** 0.5 - w) / 2)))  # R·(R+w) <= bound
    width = rows + w
    n_blocks = -(-n // rows)
    per_launch = max(1, max_elements // (rows * width))
    per_flush = max(per_launch, (4 * max_elements) // (rows * w))
    ext = x[torch.arange(n_blocks * rows + w, device=x.device) % n]  # positions past N wrap around
    sq = (ext * ext).sum(1)
    thr = (r2 + _margin(x, sq.max())) - sq  # per row: |b|² − 2a·b <= r² + margin − |a|²
    queries = torch.cat([ext, torch.ones_like(ext[:, :1])], 1)  # [a, 1]
    keys = torch.cat([-2.0 * ext, sq[:, None]], 1)  # [−2b, |b|²]
    d = dim + 1
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
        q = queries[b0 * rows:b1 * rows].view(b1 - b0, rows, d)
        k = keys.as_strided((b1 - b0, d, width), (rows * d, 1, d), b0 * rows * d)  # overlapping windows
        hit = torch.bmm(q, k) <= thr[b0 * rows:b1 * rows].view(b1 - b0, rows, 1)
        band = hit.as_strided((b1 - b0, rows, w), (rows * width, width + 1, 1), 1)
        if filled + (b1 - b0) > buf.shape[0]:
            flush()
            first, filled = b0, 0
        buf[filled:filled + (b1 - b0)] = band
        filled += b1 - b0
    flush()
    src, dst = torch.cat(srcs), torch.cat(dsts)
    step = max(1, max_elements // (2 * dim))  # candidates per chunk of the exact test: bounded memory
    within = torch.cat([(x[src[c:c + step]] - x[dst[c:c + step]]).square().sum(1) <= r2
                        for c in range(0, len(src), step)]) if len(src) else src.new_zeros(0, dtype=torch.bool)
    return src, dst, within


def band_edges(x: Tensor, r2: float, w: int, max_elements: int) -> tuple[Tensor, Tensor]:
    """Forward-band edges ``(i, (i + o) mod N)``, ``1 <= o <= w < N``, with ``Σ (x_i − x_j)² <= r2``."""
    src, dst, within = band_candidates(x, r2, w, max_elements)
    return src[within], dst[within]
