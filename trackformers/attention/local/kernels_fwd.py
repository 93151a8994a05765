"""Triton forward kernel of the ``local`` backend: banded (circular-window) attention over packed events.

Grid: (query blocks of all events, heads). Program p reads ``blk_event[p]`` (event index, -1 for an unused
program) and ``blk_start[p]`` (first query row of the block, relative to the event start) from a small int32
table built by :func:`trackformers.attention.local.function.block_table`.

Key iteration (the "band walk"): a query block [m0, m0 + BM) of an event of length L needs the keys at
unwrapped positions t in [m0 - w, m0 + BM - 1 + w]; a key's index is t mod L, computed per key *column*
(one compare/select on a BLOCK_N vector), so a tile straddling the φ seam needs no gather. When that range
would cover the whole ring, the block walks keys 0..L-1 once instead. Tiles whose every (row, key) pair lies
inside the band ("interior") skip the element-wise mask; only the first and last few tiles ("edges") and
every tile when groups are given are masked with the exact circular distance min(|i - j|, L - |i - j|) <= w.

Softmax in base 2: scores are multiplied by scale·log2(e) once, so exp2 is used throughout; the saved
log-sum-exp is in that base-2 domain (lse2 = m + log2(l)), fp32, layout (H, N_total).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def block_table_kernel(CU, BLK_EVENT, BLK_START, n_events, n_prog, BLOCK: tl.constexpr, CHUNK: tl.constexpr):
    """One program writes the whole (event, block start) table: a serial walk over events, vector stores
    within each; unused trailing entries get event -1. One launch instead of a chain of small torch ops."""
    offs = tl.arange(0, CHUNK)
    pos = 0
    for e in range(n_events):
        length = tl.load(CU + e + 1) - tl.load(CU + e)
        nb = tl.cdiv(length, BLOCK)
        for j0 in range(0, nb, CHUNK):
            j = j0 + offs
            ok = j < nb
            tl.store(BLK_EVENT + pos + j, tl.zeros([CHUNK], tl.int32) + e, mask=ok)
            tl.store(BLK_START + pos + j, j * BLOCK, mask=ok)
        pos += nb
    for p0 in range(pos, n_prog, CHUNK):
        p = p0 + offs
        ok = p < n_prog
        tl.store(BLK_EVENT + p, tl.full([CHUNK], -1, tl.int32), mask=ok)
        tl.store(BLK_START + p, tl.zeros([CHUNK], tl.int32), mask=ok)


@triton.jit
def band_range(m0, L, w, BLOCK: tl.constexpr, BLOCK_N: tl.constexpr, FULL_W: tl.constexpr):
    """For an outer block [m0, m0+BLOCK) of an event of length L: (lo, hi, n_tiles, k_a, k_b, ring).

    Inner tiles k cover unwrapped positions lo + k*BLOCK_N + [0, BLOCK_N); tiles in [k_a, k_b) are interior
    (need no element mask), the others are edges. ``ring``: the band covers the whole event, so the walk is
    0..L-1 once, every tile an edge masked by circular distance (k_a = k_b = 0); otherwise the walk is
    shorter than L and the unwrapped distance |t - i| is the circular one (:func:`band_mask_lin`). The band
    is symmetric, so the same walk serves queries over keys (forward, dq) and keys over queries (dk, dv).
    """
    m1 = tl.minimum(m0 + BLOCK, L)
    span = (m1 - m0) + 2 * w
    if FULL_W:
        span = L
    if span >= L:
        lo = m0 * 0
        hi = L - 1
        n_tiles = tl.cdiv(L, BLOCK_N)
        k_a = m0 * 0
        k_b = m0 * 0
    else:
        lo = m0 - w
        hi = m1 - 1 + w
        n_tiles = tl.cdiv(hi - lo + 1, BLOCK_N)
        # interior: t0 >= m0 + BLOCK - 1 - w and t0 + BLOCK_N - 1 <= m0 + w, with t0 = lo + k*BLOCK_N
        k_a = tl.minimum(tl.cdiv(BLOCK - 1, BLOCK_N), n_tiles)
        n_int = 2 * w + 1 - BLOCK_N  # >= 0 iff a tile fits in the band at all (avoid negative floor-div)
        k_b = tl.where(n_int >= 0, n_int // BLOCK_N + 1, 0)
        k_b = tl.maximum(tl.minimum(k_b, n_tiles), k_a)
    return lo, hi, n_tiles, k_a, k_b, span >= L


@triton.jit
def seam_split(lo, L, k_a, k_b, BLOCK_N: tl.constexpr):
    """(k_s1, k_s2): the interior tiles [k_s1, k_s2) — none or one — that straddle the φ seam (position 0
    or L of the unwrapped walk; a walk shorter than L crosses at most one). They go through the masked
    (per-element wrap) path so that every other interior tile is affine (see :func:`tile_index`)."""
    seam = tl.where(lo < 0, 0, L)
    off = seam - lo  # > 0
    k_s = tl.where(off % BLOCK_N != 0, off // BLOCK_N, k_b)
    return tl.minimum(tl.maximum(k_s, k_a), k_b), tl.minimum(tl.maximum(k_s + 1, k_a), k_b)


@triton.jit
def tile_index(lo, kt, L, offs, BLOCK_N: tl.constexpr, AFFINE: tl.constexpr):
    """(t, idx) of inner tile kt: unwrapped positions and in-event indices. With AFFINE the tile does not
    straddle the seam, so one scalar shift wraps it and idx stays contiguous: loads then take one scalar
    base per tile plus loop-invariant offsets instead of a per-row select and address."""
    t0 = lo + kt * BLOCK_N
    t = t0 + offs
    if AFFINE:
        idx = (t0 + tl.where(t0 < 0, L, tl.where(t0 >= L, -L, 0))) + offs
    else:
        idx = wrap(t, L)
    return t, idx


@triton.jit
def wrap(t, L):
    """Key index of unwrapped positions t in (-L, 2L)."""
    t = tl.where(t < 0, t + L, t)
    return tl.where(t >= L, t - L, t)


@triton.jit
def band_mask_lin(rows, t, w):
    """(rows × t) bool: |t - i| <= w on unwrapped positions (walks shorter than the event, see band_range):
    two compares of a per-column against a per-row value (no per-element difference, which the compiler
    would hoist out of the loop as a register-hungry matrix). Columns past the walk's end (t > hi) fail it
    for every real row, so their loads alone need a mask."""
    return (t[None, :] >= (rows - w)[:, None]) & (t[None, :] <= (rows + w)[:, None])


@triton.jit
def band_mask(rows, cols, L, w, valid_col, FULL_W: tl.constexpr):
    """(rows × cols) bool: circular distance <= w (rows, cols are wrapped in-event indices)."""
    d = tl.abs(rows[:, None] - cols[None, :])
    ok = valid_col[None, :]
    if not FULL_W:
        ok = ok & (tl.minimum(d, L - d) <= w)
    return ok


@triton.jit
def _fwd_tiles(acc, m_i, l_i, q, rows, g_rows, k_base, v_base, g_base, stride_kn, stride_vn, offs_d,
               L, w, lo, hi, k_lo, k_hi, qk_scale,
               MASKED: tl.constexpr, HAS_GROUPS: tl.constexpr, FULL_W: tl.constexpr,
               BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr, AFFINE: tl.constexpr, RING: tl.constexpr):
    offs_n = tl.arange(0, BLOCK_N)
    for kt in range(k_lo, k_hi):
        t, cols = tile_index(lo, kt, L, offs_n, BLOCK_N, AFFINE and not MASKED)
        if MASKED:
            valid = t <= hi
            k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :], mask=valid[:, None], other=0.0)
            v = tl.load(v_base + cols[:, None] * stride_vn + offs_d[None, :], mask=valid[:, None], other=0.0)
        else:
            k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :])
            v = tl.load(v_base + cols[:, None] * stride_vn + offs_d[None, :])
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)  # raw scores; scaled inside the exp2's FMA
        if MASKED:
            if RING:
                ok = band_mask(rows, cols, L, w, valid, FULL_W)
            else:
                ok = band_mask_lin(rows, t, w)
            if HAS_GROUPS:
                g_cols = tl.load(g_base + cols, mask=valid, other=-1)
                ok = ok & (g_rows[:, None] == g_cols[None, :])
            s = tl.where(ok, s, float("-inf"))
        elif HAS_GROUPS:
            g_cols = tl.load(g_base + cols)
            s = tl.where(g_rows[:, None] == g_cols[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
        if MASKED or HAS_GROUPS:
            # rows that have seen no allowed key yet keep m = -inf; shift by 0 there to avoid inf - inf
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:  # interior tiles: every score is finite, so m_new is
            m_safe = m_new
        p = tl.math.exp2(s * qk_scale - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def local_attn_fwd(
    Q, K, V, O, LSE, G, CU, BLK_EVENT, BLK_START,
    stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_on, stride_oh,
    stride_lh, w, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    FULL_W: tl.constexpr, HAS_GROUPS: tl.constexpr, SAVE_LSE: tl.constexpr, DOT_PREC: tl.constexpr,
    AFFINE: tl.constexpr,
):
    pid = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    ev = tl.load(BLK_EVENT + pid)
    if ev < 0:
        return
    m0 = tl.load(BLK_START + pid)
    start = tl.load(CU + ev)
    L = tl.load(CU + ev + 1) - start
    start = start.to(tl.int64)

    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    rows = m0 + offs_m
    row_ok = rows < L
    q_ptrs = Q + (start + rows)[:, None] * stride_qn + h * stride_qh + offs_d[None, :]
    q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)
    k_base = K + start * stride_kn + h * stride_kh
    v_base = V + start * stride_vn + h * stride_vh
    g_base = G + start
    g_rows = rows
    if HAS_GROUPS:
        g_rows = tl.load(g_base + rows, mask=row_ok, other=-2)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    lo, hi, n_tiles, k_a, k_b, ring = band_range(m0, L, w, BLOCK_M, BLOCK_N, FULL_W)
    if FULL_W:
        acc, m_i, l_i = _fwd_tiles(acc, m_i, l_i, q, rows, g_rows, k_base, v_base, g_base, stride_kn,
                                   stride_vn, offs_d, L, w, lo, hi, 0, n_tiles, qk_scale, True, HAS_GROUPS,
                                   FULL_W, BLOCK_N, DOT_PREC, False, True)
    else:  # ring walks (band covers the event) take the first loop, shorter walks the other five
        n_ring = tl.where(ring, n_tiles, 0)
        k_s1, k_s2 = k_b, k_b
        if AFFINE:
            k_s1, k_s2 = seam_split(lo, L, k_a, k_b, BLOCK_N)
        acc, m_i, l_i = _fwd_tiles(acc, m_i, l_i, q, rows, g_rows, k_base, v_base, g_base, stride_kn,
                                   stride_vn, offs_d, L, w, lo, hi, 0, n_ring, qk_scale, True, HAS_GROUPS,
                                   FULL_W, BLOCK_N, DOT_PREC, False, True)
        acc, m_i, l_i = _fwd_tiles(acc, m_i, l_i, q, rows, g_rows, k_base, v_base, g_base, stride_kn,
                                   stride_vn, offs_d, L, w, lo, hi, 0, k_a, qk_scale, True, HAS_GROUPS,
                                   FULL_W, BLOCK_N, DOT_PREC, False, False)
        acc, m_i, l_i = _fwd_tiles(acc, m_i, l_i, q, rows, g_rows, k_base, v_base, g_base, stride_kn,
                                   stride_vn, offs_d, L, w, lo, hi, k_a, k_s1, qk_scale, False, HAS_GROUPS,
                                   FULL_W, BLOCK_N, DOT_PREC, AFFINE, False)
        if AFFINE:  # the interior tile on the seam (if any), then the rest of the interior
            acc, m_i, l_i = _fwd_tiles(acc, m_i, l_i, q, rows, g_rows, k_base, v_base, g_base, stride_kn,
                                       stride_vn, offs_d, L, w, lo, hi, k_s1, k_s2, qk_scale, True,
                                       HAS_GROUPS, FULL_W, BLOCK_N, DOT_PREC, False, False)
            acc, m_i, l_i = _fwd_tiles(acc, m_i, l_i, q, rows, g_rows, k_base, v_base, g_base, stride_kn,
                                       stride_vn, offs_d, L, w, lo, hi, k_s2, k_b, qk_scale, False,
                                       HAS_GROUPS, FULL_W, BLOCK_N, DOT_PREC, True, False)
        acc, m_i, l_i = _fwd_tiles(acc, m_i, l_i, q, rows, g_rows, k_base, v_base, g_base, stride_kn,
                                   stride_vn, offs_d, L, w, lo, hi, k_b, n_tiles - n_ring, qk_scale, True,
                                   HAS_GROUPS, FULL_W, BLOCK_N, DOT_PREC, False, False)
    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / l_safe[:, None]
    o_ptrs = O + (start + rows)[:, None] * stride_on + h * stride_oh + offs_d[None, :]
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None])
    if SAVE_LSE:
        lse = tl.where(l_i > 0.0, m_i + tl.math.log2(l_safe), float("inf"))
        tl.store(LSE + h * stride_lh + start + rows, lse, mask=row_ok)
