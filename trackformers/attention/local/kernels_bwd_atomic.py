"""One-pass Triton backward of the ``local`` backend: dK, dV in registers, dQ by fp32 atomic adds.

One program per (key block, head) walks the query tiles of its band (the band is symmetric, so the forward's
walk serves with queries and keys swapped) and per tile does the five block matmuls of the backward:
S = K·Qᵀ, dV += P·dO, dP = V·dOᵀ, dK += dS·Q and dQ_tile = dSᵀ·K, the last added into an fp32 (N_total, H, D)
buffer with relaxed atomics (zeroed beforehand by ``local_attn_bwd_delta``). A query row receives from the
(B + 2w)/B_keys key blocks whose band covers it — a handful of programs, so contention is low — but the order
of those fp32 additions is not fixed, so dQ is not bitwise reproducible; the two-kernel path in
:mod:`.kernels_bwd` is (function.py always picks it under ``torch.use_deterministic_algorithms(True)``).

Against that path this one does 5 matmuls and one exp2 per (query, key) pair instead of 7 and two, yet on
the H100 it measured 16% slower (the atomic traffic is (B_keys + 2w)/B_keys · N·H·D·4 bytes, 2.3 GB at
N = 65536, w = 512, D = 64), so it runs only where a config pins ``KernelConfigs.bwd`` (config.ATOMIC_BWD).
P is recomputed from the saved base-2 log-sum-exp: P = exp2(q·k·scale·log2e − lse2).
"""

from __future__ import annotations

import triton
import triton.language as tl

from trackformers.attention.local.kernels_bwd import load_key_block, store_key_block
from trackformers.attention.local.kernels_fwd import band_mask, band_range, wrap


@triton.jit
def _fused_tiles(dk, dv, k, v, key_rows, g_keys, q_base, do_base, dq_base, lse_base, delta_base, g_base,
                 stride_qn, stride_dn, stride_dqn, offs_d, L, w, lo, hi, k_lo, k_hi, qk_scale, scale,
                 MASKED: tl.constexpr, HAS_GROUPS: tl.constexpr, FULL_W: tl.constexpr,
                 BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr, DOT_PREC: tl.constexpr):
    offs_m = tl.arange(0, BLOCK_M)
    for kt in range(k_lo, k_hi):
        t = lo + kt * BLOCK_M + offs_m
        qrows = wrap(t, L)
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
            ok = band_mask(key_rows, qrows, L, w, valid, FULL_W)
            if HAS_GROUPS:
                g_q = tl.load(g_base + qrows, mask=valid, other=-1)
                ok = ok & (g_keys[:, None] == g_q[None, :])
            p_t = tl.where(ok, p_t, 0.0)
        elif HAS_GROUPS:
            g_q = tl.load(g_base + qrows)
            p_t = tl.where(g_keys[:, None] == g_q[None, :], p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=DOT_PREC)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
        ds_t = (p_t * (dp_t - delta[None, :])).to(q.dtype)
        dk += tl.dot(ds_t, q, input_precision=DOT_PREC)
        dq = tl.dot(tl.trans(ds_t), k, input_precision=DOT_PREC) * scale  # (BLOCK_M, HEAD_DIM) fp32
        dq_ptrs = dq_base + qrows[:, None] * stride_dqn + offs_d[None, :]
        if MASKED:  # rows past the band's end wrap onto rows of other tiles: they must add nothing
            tl.atomic_add(dq_ptrs, dq, mask=valid[:, None] & (offs_d[None, :] < HEAD_DIM), sem="relaxed")
        else:
            tl.atomic_add(dq_ptrs, dq, sem="relaxed")
    return dk, dv


@triton.jit
def local_attn_bwd_fused(
    Q, K, V, DO, DQ, DK, DV, LSE, DELTA, G, CU, BLK_EVENT, BLK_START,
    stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_dn, stride_dh,
    stride_dqn, stride_dqh, stride_dkn, stride_dkh, stride_dvn, stride_dvh, stride_lh, w, qk_scale, scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    FULL_W: tl.constexpr, HAS_GROUPS: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Grid (key blocks of all events, heads); DQ is the fp32 accumulator, DK/DV are written once."""
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
    dq_base = DQ + start * stride_dqn + h * stride_dqh
    lse_base = LSE + h * stride_lh + start
    delta_base = DELTA + h * stride_lh + start

    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    lo, hi, n_tiles, k_a, k_b, _ = band_range(n0, L, w, BLOCK_N, BLOCK_M, FULL_W)
    dk, dv = _fused_tiles(dk, dv, k, v, key_rows, g_keys, q_base, do_base, dq_base, lse_base, delta_base,
                          g_base, stride_qn, stride_dn, stride_dqn, offs_d, L, w, lo, hi, 0, k_a, qk_scale,
                          scale, True, HAS_GROUPS, FULL_W, BLOCK_M, HEAD_DIM, DOT_PREC)
    dk, dv = _fused_tiles(dk, dv, k, v, key_rows, g_keys, q_base, do_base, dq_base, lse_base, delta_base,
                          g_base, stride_qn, stride_dn, stride_dqn, offs_d, L, w, lo, hi, k_a, k_b, qk_scale,
                          scale, False, HAS_GROUPS, FULL_W, BLOCK_M, HEAD_DIM, DOT_PREC)
    dk, dv = _fused_tiles(dk, dv, k, v, key_rows, g_keys, q_base, do_base, dq_base, lse_base, delta_base,
                          g_base, stride_qn, stride_dn, stride_dqn, offs_d, L, w, lo, hi, k_b, n_tiles,
                          qk_scale, scale, True, HAS_GROUPS, FULL_W, BLOCK_M, HEAD_DIM, DOT_PREC)
    store_key_block(DK, DV, dk * scale, dv, start, key_rows, key_ok, h, offs_d, stride_dkn, stride_dkh,
                    stride_dvn, stride_dvh)
