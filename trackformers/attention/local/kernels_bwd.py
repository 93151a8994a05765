"""Triton backward kernels of the ``local`` backend (FlashAttention-2 style, deterministic: no atomics).

This two-kernel path is the default (on the H100 it beat the one-pass kernel of :mod:`.kernels_bwd_atomic`,
which adds dQ by fp32 atomics), and the only one under ``torch.use_deterministic_algorithms(True)``.

1. ``local_attn_bwd_dq``: one program per (query block, head) computes delta = rowsum(dO · O) of its rows
   (fp32 (H, N_total), stored), then walks its key tiles and accumulates dQ.
2. ``local_attn_bwd_dkdv`` (launched after, reads delta): one program per (key block, head) walks the query
   tiles of its band (the band is symmetric, so the walk of the forward kernel serves with queries and keys
   swapped) and accumulates dK, dV in registers.
``local_attn_bwd_delta`` computes delta alone (and zeroes the dQ accumulator) for the atomic backward.
The probabilities are recomputed from the saved base-2 log-sum-exp: P = exp2(q·k·scale·log2e − lse2).
"""

from __future__ import annotations

import triton
import triton.language as tl

from trackformers.attention.local.kernels_fwd import (
    band_mask,
    band_mask_lin,
    band_range,
    seam_split,
    tile_index,
)


@triton.jit
def load_key_block(K, V, G, start, n0, L, h, stride_kn, stride_kh, stride_vn, stride_vh,
                   HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, HAS_GROUPS: tl.constexpr):
    """One key block of an event for the dK/dV kernels (two-kernel and atomic): rows n0.. (event-local),
    their validity, K and V tiles (BLOCK_N, HEAD_DIM), group ids (or the rows themselves), offs_d."""
    offs_d = tl.arange(0, HEAD_DIM)
    key_rows = n0 + tl.arange(0, BLOCK_N)
    key_ok = key_rows < L
    k = tl.load(K + (start + key_rows)[:, None] * stride_kn + h * stride_kh + offs_d[None, :],
                mask=key_ok[:, None], other=0.0)
    v = tl.load(V + (start + key_rows)[:, None] * stride_vn + h * stride_vh + offs_d[None, :],
                mask=key_ok[:, None], other=0.0)
    g_base = G + start
    g_keys = key_rows
    if HAS_GROUPS:
        g_keys = tl.load(g_base + key_rows, mask=key_ok, other=-2)
    return key_rows, key_ok, k, v, g_base, g_keys, offs_d


@triton.jit
def store_key_block(DK, DV, dk, dv, start, key_rows, key_ok, h, offs_d, stride_dkn, stride_dkh, stride_dvn,
                    stride_dvh):
    """Write one key block's dK and dV (fp32 accumulators) in the outputs' dtype."""
    tl.store(DK + (start + key_rows)[:, None] * stride_dkn + h * stride_dkh + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=key_ok[:, None])
    tl.store(DV + (start + key_rows)[:, None] * stride_dvn + h * stride_dvh + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=key_ok[:, None])


@triton.jit
def local_attn_bwd_delta(O, DO, DELTA, DQ, N, stride_on, stride_oh, stride_dn, stride_dh, stride_lh,
                         stride_qn, stride_qh, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr,
                         ZERO_DQ: tl.constexpr):
    """delta = rowsum(dO·O); with ZERO_DQ also zero the fp32 dQ accumulator of the atomic backward (one
    launch fewer than a separate memset)."""
    pid = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    rows = (pid * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    ok = rows < N
    offs_d = tl.arange(0, HEAD_DIM)
    o = tl.load(O + rows[:, None] * stride_on + h * stride_oh + offs_d[None, :], mask=ok[:, None], other=0.0)
    do = tl.load(DO + rows[:, None] * stride_dn + h * stride_dh + offs_d[None, :], mask=ok[:, None],
                 other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + h * stride_lh + rows, delta, mask=ok)
    if ZERO_DQ:
        tl.store(DQ + rows[:, None] * stride_qn + h * stride_qh + offs_d[None, :],
                 tl.zeros([BLOCK, HEAD_DIM], tl.float32), mask=ok[:, None])


@triton.jit
def _dkdv_tiles(dk, dv, k, v, key_rows, g_keys, q_base, do_base, lse_base, delta_base, g_base,
                stride_qn, stride_dn, offs_d, L, w, lo, hi, k_lo, k_hi, qk_scale,
                MASKED: tl.constexpr, HAS_GROUPS: tl.constexpr, FULL_W: tl.constexpr,
                BLOCK_M: tl.constexpr, DOT_PREC: tl.constexpr, AFFINE: tl.constexpr, RING: tl.constexpr):
    offs_m = tl.arange(0, BLOCK_M)
    for kt in range(k_lo, k_hi):
        t, qrows = tile_index(lo, kt, L, offs_m, BLOCK_M, AFFINE and not MASKED)
        if MASKED:
            valid = t <= hi
            q = tl.load(q_base + qrows[:, None] * stride_qn + offs_d[None, :], mask=valid[:, None], other=0.0)
            do = tl.load(do_base + qrows[:, None] * stride_dn + offs_d[None, :], mask=valid[:, None],
                         other=0.0)
            lse = tl.load(lse_base + qrows, mask=valid, other=float("inf"))
            delta = tl.load(delta_base + qrows, mask=valid, other=0.0)
        else:
            q = tl.load(q_base + qrows[:, None] * stride_qn + offs_d[None, :])
            do = tl.load(do_base + qrows[:, None] * stride_dn + offs_d[None, :])
            lse = tl.load(lse_base + qrows)
            delta = tl.load(delta_base + qrows)
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PREC)  # (BLOCK_N keys, BLOCK_M queries)
        p_t = tl.math.exp2(s_t * qk_scale - lse[None, :])
        if MASKED:
            if RING:
                ok = band_mask(key_rows, qrows, L, w, valid, FULL_W)
            else:
                ok = band_mask_lin(key_rows, t, w)
            if HAS_GROUPS:
                g_q = tl.load(g_base + qrows, mask=valid, other=-1)
                ok = ok & (g_keys[:, None] == g_q[None, :])
            p_t = tl.where(ok, p_t, 0.0)
        elif HAS_GROUPS:
            g_q = tl.load(g_base + qrows)
            p_t = tl.where(g_keys[:, None] == g_q[None, :], p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=DOT_PREC)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=DOT_PREC)
    return dk, dv


@triton.jit
def local_attn_bwd_dkdv(
    Q, K, V, DO, DK, DV, LSE, DELTA, G, CU, BLK_EVENT, BLK_START,
    stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_dn, stride_dh,
    stride_dkn, stride_dkh, stride_dvn, stride_dvh, stride_lh, w, qk_scale, scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    FULL_W: tl.constexpr, HAS_GROUPS: tl.constexpr, DOT_PREC: tl.constexpr, AFFINE: tl.constexpr,
):
    pid = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    ev = tl.load(BLK_EVENT + pid)
    if ev < 0:
        return
    n0 = tl.load(BLK_START + pid)
    start = tl.load(CU + ev)
    L = tl.load(CU + ev + 1) - start
    start = start.to(tl.int64)

    key_rows, key_ok, k, v, g_base, g_keys, offs_d = load_key_block(
        K, V, G, start, n0, L, h, stride_kn, stride_kh, stride_vn, stride_vh, HEAD_DIM, BLOCK_N, HAS_GROUPS)
    q_base = Q + start * stride_qn + h * stride_qh
    do_base = DO + start * stride_dn + h * stride_dh
    lse_base = LSE + h * stride_lh + start
    delta_base = DELTA + h * stride_lh + start

    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    lo, hi, n_tiles, k_a, k_b, ring = band_range(n0, L, w, BLOCK_N, BLOCK_M, FULL_W)
    if FULL_W:
        dk, dv = _dkdv_tiles(dk, dv, k, v, key_rows, g_keys, q_base, do_base, lse_base, delta_base, g_base,
                             stride_qn, stride_dn, offs_d, L, w, lo, hi, 0, n_tiles, qk_scale, True,
                             HAS_GROUPS, FULL_W, BLOCK_M, DOT_PREC, False, True)
    else:  # ring walks (band covers the event) take the first loop, shorter walks the other five
        n_ring = tl.where(ring, n_tiles, 0)
        k_s1, k_s2 = k_b, k_b
        if AFFINE:
            k_s1, k_s2 = seam_split(lo, L, k_a, k_b, BLOCK_M)
        dk, dv = _dkdv_tiles(dk, dv, k, v, key_rows, g_keys, q_base, do_base, lse_base, delta_base, g_base,
                             stride_qn, stride_dn, offs_d, L, w, lo, hi, 0, n_ring, qk_scale, True,
                             HAS_GROUPS, FULL_W, BLOCK_M, DOT_PREC, False, True)
        dk, dv = _dkdv_tiles(dk, dv, k, v, key_rows, g_keys, q_base, do_base, lse_base, delta_base, g_base,
                             stride_qn, stride_dn, offs_d, L, w, lo, hi, 0, k_a, qk_scale, True, HAS_GROUPS,
                             FULL_W, BLOCK_M, DOT_PREC, False, False)
        dk, dv = _dkdv_tiles(dk, dv, k, v, key_rows, g_keys, q_base, do_base, lse_base, delta_base, g_base,
                             stride_qn, stride_dn, offs_d, L, w, lo, hi, k_a, k_s1, qk_scale, False,
                             HAS_GROUPS, FULL_W, BLOCK_M, DOT_PREC, AFFINE, False)
        if AFFINE:  # the interior tile on the seam (if any), then the rest of the interior
            dk, dv = _dkdv_tiles(dk, dv, k, v, key_rows, g_keys, q_base, do_base, lse_base, delta_base,
                                 g_base, stride_qn, stride_dn, offs_d, L, w, lo, hi, k_s1, k_s2, qk_scale,
                                 True, HAS_GROUPS, FULL_W, BLOCK_M, DOT_PREC, False, False)
            dk, dv = _dkdv_tiles(dk, dv, k, v, key_rows, g_keys, q_base, do_base, lse_base, delta_base,
                                 g_base, stride_qn, stride_dn, offs_d, L, w, lo, hi, k_s2, k_b, qk_scale,
                                 False, HAS_GROUPS, FULL_W, BLOCK_M, DOT_PREC, True, False)
        dk, dv = _dkdv_tiles(dk, dv, k, v, key_rows, g_keys, q_base, do_base, lse_base, delta_base, g_base,
                             stride_qn, stride_dn, offs_d, L, w, lo, hi, k_b, n_tiles - n_ring, qk_scale,
                             True, HAS_GROUPS, FULL_W, BLOCK_M, DOT_PREC, False, False)
    store_key_block(DK, DV, dk * scale, dv, start, key_rows, key_ok, h, offs_d, stride_dkn, stride_dkh,
                    stride_dvn, stride_dvh)


@triton.jit
def _dq_tiles(dq, q, do, lse, delta, rows, g_rows, k_base, v_base, g_base, stride_kn, stride_vn, offs_d,
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
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        p = tl.math.exp2(s * qk_scale - lse[:, None])
        if MASKED:
            if RING:
                ok = band_mask(rows, cols, L, w, valid, FULL_W)
            else:
                ok = band_mask_lin(rows, t, w)
            if HAS_GROUPS:
                g_cols = tl.load(g_base + cols, mask=valid, other=-1)
                ok = ok & (g_rows[:, None] == g_cols[None, :])
            p = tl.where(ok, p, 0.0)
        elif HAS_GROUPS:
            g_cols = tl.load(g_base + cols)
            p = tl.where(g_rows[:, None] == g_cols[None, :], p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
    return dq


@triton.jit
def local_attn_bwd_dq(
    Q, K, V, DO, DQ, LSE, DELTA, O, G, CU, BLK_EVENT, BLK_START,
    stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_dn, stride_dh,
    stride_dqn, stride_dqh, stride_on, stride_oh, stride_lh, w, qk_scale, scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    FULL_W: tl.constexpr, HAS_GROUPS: tl.constexpr, DOT_PREC: tl.constexpr, AFFINE: tl.constexpr,
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
    q = tl.load(Q + (start + rows)[:, None] * stride_qn + h * stride_qh + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)
    do = tl.load(DO + (start + rows)[:, None] * stride_dn + h * stride_dh + offs_d[None, :],
                 mask=row_ok[:, None], other=0.0)
    lse = tl.load(LSE + h * stride_lh + start + rows, mask=row_ok, other=float("inf"))
    # delta = rowsum(dO·O) of this block's rows, computed here and stored for the dK/dV kernel that runs
    # next (one launch fewer than a separate delta kernel)
    o = tl.load(O + (start + rows)[:, None] * stride_on + h * stride_oh + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + h * stride_lh + start + rows, delta, mask=row_ok)
    g_base = G + start
    g_rows = rows
    if HAS_GROUPS:
        g_rows = tl.load(g_base + rows, mask=row_ok, other=-2)
    k_base = K + start * stride_kn + h * stride_kh
    v_base = V + start * stride_vn + h * stride_vh

    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    lo, hi, n_tiles, k_a, k_b, ring = band_range(m0, L, w, BLOCK_M, BLOCK_N, FULL_W)
    if FULL_W:
        dq = _dq_tiles(dq, q, do, lse, delta, rows, g_rows, k_base, v_base, g_base, stride_kn, stride_vn,
                       offs_d, L, w, lo, hi, 0, n_tiles, qk_scale, True, HAS_GROUPS, FULL_W, BLOCK_N,
                       DOT_PREC, False, True)
    else:  # ring walks (band covers the event) take the first loop, shorter walks the other five
        n_ring = tl.where(ring, n_tiles, 0)
        k_s1, k_s2 = k_b, k_b
        if AFFINE:
            k_s1, k_s2 = seam_split(lo, L, k_a, k_b, BLOCK_N)
        dq = _dq_tiles(dq, q, do, lse, delta, rows, g_rows, k_base, v_base, g_base, stride_kn, stride_vn,
                       offs_d, L, w, lo, hi, 0, n_ring, qk_scale, True, HAS_GROUPS, FULL_W, BLOCK_N, DOT_PREC,
                       False, True)
        dq = _dq_tiles(dq, q, do, lse, delta, rows, g_rows, k_base, v_base, g_base, stride_kn, stride_vn,
                       offs_d, L, w, lo, hi, 0, k_a, qk_scale, True, HAS_GROUPS, FULL_W, BLOCK_N, DOT_PREC,
                       False, False)
        dq = _dq_tiles(dq, q, do, lse, delta, rows, g_rows, k_base, v_base, g_base, stride_kn, stride_vn,
                       offs_d, L, w, lo, hi, k_a, k_s1, qk_scale, False, HAS_GROUPS, FULL_W, BLOCK_N,
                       DOT_PREC, AFFINE, False)
        if AFFINE:  # the interior tile on the seam (if any), then the rest of the interior
            dq = _dq_tiles(dq, q, do, lse, delta, rows, g_rows, k_base, v_base, g_base, stride_kn, stride_vn,
                           offs_d, L, w, lo, hi, k_s1, k_s2, qk_scale, True, HAS_GROUPS, FULL_W, BLOCK_N,
                           DOT_PREC, False, False)
            dq = _dq_tiles(dq, q, do, lse, delta, rows, g_rows, k_base, v_base, g_base, stride_kn, stride_vn,
                           offs_d, L, w, lo, hi, k_s2, k_b, qk_scale, False, HAS_GROUPS, FULL_W, BLOCK_N,
                           DOT_PREC, True, False)
        dq = _dq_tiles(dq, q, do, lse, delta, rows, g_rows, k_base, v_base, g_base, stride_kn, stride_vn,
                       offs_d, L, w, lo, hi, k_b, n_tiles - n_ring, qk_scale, True, HAS_GROUPS, FULL_W,
                       BLOCK_N, DOT_PREC, False, False)
    dq = dq * scale
    tl.store(DQ + (start + rows)[:, None] * stride_dqn + h * stride_dqh + offs_d[None, :],
             dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])
