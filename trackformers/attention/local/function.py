"""Launchers and the private autograd Function of the ``local`` backend.

Tensors: q, k, v (N_total, H, D), any strides with a unit last stride (views of a fused qkv projection
pass without copies); out (N_total, H, D) contiguous; lse2 (H, N_total) fp32 (base-2 log-sum-exp of the
scaled scores, saved only when a gradient is needed).
"""

from __future__ import annotations

import math
import weakref

import torch
import triton

from trackformers.attention.local.config import KernelConfigs, configs_for
from trackformers.attention.local.kernels_bwd import (
    local_attn_bwd_delta,
    local_attn_bwd_dkdv,
    local_attn_bwd_dq,
)
from trackformers.attention.local.kernels_bwd_atomic import local_attn_bwd_fused
from trackformers.attention.local.kernels_fwd import block_table_kernel, local_attn_fwd

LOG2E = 1.4426950408889634
#: Test hook: when True, output buffers are filled with NaN before each launch (so unwritten rows show).
POISON = False


def block_table(cu_seqlens: torch.Tensor, n_total: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Map programs to blocks: (blk_event, blk_start), each (cdiv(N_total, block) + E,) int32.

    Program p handles rows [blk_start[p], blk_start[p] + block) of event blk_event[p] (-1: unused program).
    One single-program launch on the device, no host synchronisation: the grid size comes from shapes alone.
    """
    n_events = cu_seqlens.numel() - 1
    n_prog = triton.cdiv(n_total, block) + n_events
    table = torch.empty((2, n_prog), dtype=torch.int32, device=cu_seqlens.device)
    block_table_kernel[(1,)](cu_seqlens, table[0], table[1], n_events, n_prog, BLOCK=block, CHUNK=1024)
    return table[0], table[1]


class _Tables:
    """Block tables of one layout, built once per block size. Holds cu weakly (the cache must not keep it
    alive); a caller holds it while using the tables."""

    def __init__(self, cu: torch.Tensor, n_total: int):
        self._cu, self.n, self._t = weakref.ref(cu), n_total, {}
        self.version = None if cu.is_inference() else cu._version  # inference tensors have no counter

    def matches(self, cu: torch.Tensor, n_total: int) -> bool:
        return self._cu() is cu and self.n == n_total and self.version == cu._version

    def __call__(self, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        if block not in self._t:
            self._t[block] = block_table(self._cu(), self.n, block)
        return self._t[block]


#: Tables per cu_seqlens tensor (by identity, dropped when it is freed): the layers of one batch share one
#: layout, so its tables are built once per batch, not once per layer. An in-place change of the tensor
#: (its ``_version``) or another N_total rebuilds them.
_TABLE_CACHE: dict[int, _Tables] = {}


def tables_for(cu: torch.Tensor, n_total: int) -> _Tables:
    """The (cached) block tables of a layout: cu (E+1,) int32 on the kernels' device."""
    if cu.is_inference():
        # Under torch.inference_mode() the tensor has no version counter to detect in-place changes: no cache.
        return _Tables(cu, n_total)
    key = id(cu)
    t = _TABLE_CACHE.get(key)
    if t is None or not t.matches(cu, n_total):
        if key not in _WATCHED:
            _WATCHED.add(key)
            weakref.finalize(cu, _forget, key)
        t = _TABLE_CACHE[key] = _Tables(cu, n_total)
    return t


_WATCHED: set[int] = set()


def _forget(key: int) -> None:
    _TABLE_CACHE.pop(key, None)
    _WATCHED.discard(key)


def clear_table_cache() -> None:
    """Forget every cached block table (benchmarks: make each step pay its index build)."""
    _TABLE_CACHE.clear()


def deterministic() -> bool:
    """True when the backward must be bitwise reproducible (``torch.use_deterministic_algorithms``): then
    the two-kernel backward runs instead of the one-pass one with atomic dQ adds."""
    return torch.are_deterministic_algorithms_enabled()


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _dot_prec(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


def _forward(q, k, v, cu, groups, tables, w, full_w, scale, cfg: KernelConfigs, save_lse: bool):
    n, h, d = q.shape
    out = torch.empty((n, h, d), dtype=q.dtype, device=q.device)
    if POISON:
        out.fill_(float("nan"))
    lse = torch.empty((h, n), dtype=torch.float32, device=q.device) if save_lse else out
    blk_event, blk_start = tables(cfg.fwd.block_m)
    g = groups if groups is not None else cu
    grid = (blk_event.numel(), h)
    local_attn_fwd[grid](
        q, k, v, out, lse, g, cu, blk_event, blk_start,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), out.stride(0),
        out.stride(1), n, w, scale * LOG2E,
        HEAD_DIM=d, BLOCK_M=cfg.fwd.block_m, BLOCK_N=cfg.fwd.block_n, FULL_W=full_w,
        HAS_GROUPS=groups is not None, SAVE_LSE=save_lse, DOT_PREC=_dot_prec(q.dtype), AFFINE=cfg.affine,
        **cfg.fwd.launch())
    return out, (lse if save_lse else None)


def _backward(do, q, k, v, o, lse, cu, groups, tables, w, full_w, scale, cfg: KernelConfigs,
              atomic: bool | None = None):
    """dq, dk, dv (N_total, H, D). ``atomic`` None: the one-pass atomic kernel when ``cfg.bwd`` is set and
    deterministic algorithms are not requested, else the deterministic two-kernel path."""
    n, h, d = q.shape
    do = _unit_last(do)
    if atomic is None:
        atomic = cfg.bwd is not None and not deterministic()
    # the atomic path accumulates dQ in fp32 (zeroed by the delta kernel); fp32 inputs use it as dq itself
    dq = torch.empty((n, h, d), dtype=torch.float32 if atomic else q.dtype, device=q.device)
    dk, dv = (torch.empty((n, h, d), dtype=t.dtype, device=t.device) for t in (k, v))
    if POISON:
        for t in (dq, dk, dv):
            t.fill_(float("nan"))
    delta = torch.empty((h, n), dtype=torch.float32, device=q.device)
    if POISON:
        delta.fill_(float("nan"))
    if atomic:
        local_attn_bwd_delta[(triton.cdiv(n, 64), h)](o, do, delta, dq, n, o.stride(0), o.stride(1),
                                                       do.stride(0), do.stride(1), n, dq.stride(0),
                                                       dq.stride(1), HEAD_DIM=d, BLOCK=64, ZERO_DQ=True)
    g = groups if groups is not None else cu
    common = dict(HEAD_DIM=d, FULL_W=full_w, HAS_GROUPS=groups is not None, DOT_PREC=_dot_prec(q.dtype))
    strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), do.stride(0),
               do.stride(1))
    if atomic:
        c = cfg.bwd
        blk_event, blk_start = tables(c.block_n)
        local_attn_bwd_fused[(blk_event.numel(), h)](
            q, k, v, do, dq, dk, dv, lse, delta, g, cu, blk_event, blk_start, *strides,
            dq.stride(0), dq.stride(1), dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1), n, w,
            scale * LOG2E, scale,
            BLOCK_M=c.block_m, BLOCK_N=c.block_n, **c.launch(), **common)
        return (dq if q.dtype == torch.float32 else dq.to(q.dtype)), dk, dv
    common["AFFINE"] = cfg.affine
    c = cfg.dq  # first: it also writes delta, which the dK/dV kernel reads
    blk_event, blk_start = tables(c.block_m)
    local_attn_bwd_dq[(blk_event.numel(), h)](
        q, k, v, do, dq, lse, delta, o, g, cu, blk_event, blk_start, *strides,
        dq.stride(0), dq.stride(1), o.stride(0), o.stride(1), n, w, scale * LOG2E, scale,
        BLOCK_M=c.block_m, BLOCK_N=c.block_n, **c.launch(), **common)
    c = cfg.dkdv
    blk_event, blk_start = tables(c.block_n)
    local_attn_bwd_dkdv[(blk_event.numel(), h)](
        q, k, v, do, dk, dv, lse, delta, g, cu, blk_event, blk_start, *strides,
        dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1), n, w, scale * LOG2E, scale,
        BLOCK_M=c.block_m, BLOCK_N=c.block_n, **c.launch(), **common)
    return dq, dk, dv


class _LocalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu, groups, w, full_w, scale, cfg):
        tables = tables_for(cu, q.shape[0])
        needs_grad = any(ctx.needs_input_grad[:3])
        out, lse = _forward(q, k, v, cu, groups, tables, w, full_w, scale, cfg, needs_grad)
        if needs_grad:
            ctx.save_for_backward(q, k, v, out, lse, groups)
            # cu itself (not a saved copy) keeps the tables' weak reference valid until the backward
            ctx.cu, ctx.tables, ctx.args = cu, tables, (w, full_w, scale, cfg)
        return out

    @staticmethod
    def backward(ctx, do):
        q, k, v, out, lse, groups = ctx.saved_tensors
        dq, dk, dv = _backward(do, q, k, v, out, lse, ctx.cu, groups, ctx.tables, *ctx.args)
        return dq, dk, dv, None, None, None, None, None, None


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                    max_seqlen: int, window: int | None, scale: float | None = None,
                    groups: torch.Tensor | None = None, cfg: KernelConfigs | None = None) -> torch.Tensor:
    """Circular-window attention over packed events; q, k, v (N_total, H, D) → (N_total, H, D).

    ``window`` None means each event attends to all of itself; ``groups`` (N_total,) int restricts further.
    """
    d = q.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    if not scale > 0:  # the scale is applied after the row max (in the exp2 FMA): it must keep the order
        raise ValueError(f"local attention needs a positive softmax scale; got {scale}")
    q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
    # in-event row offsets are int32 in the kernels (row index × row stride): keep them below 2³¹; views of a
    # fused (N, 3, H, D) projection have 3× the row stride of copies, so copy before giving up
    if max_seqlen * max(t.stride(0) for t in (q, k, v)) >= 2**31:
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if max_seqlen * max(t.stride(0) for t in (q, k, v)) >= 2**31:
        raise ValueError(f"local attention: an event of {max_seqlen} hits with row stride "
                         f"{max(t.stride(0) for t in (q, k, v))} overflows int32 offsets; split the event")
    cu = cu_seqlens.to(device=q.device, dtype=torch.int32)
    if groups is not None:
        groups = groups.to(q.device).contiguous()
    full_w = window is None or 2 * window + 1 >= max_seqlen
    w = max(0, min(window if window is not None else max_seqlen, max_seqlen))
    cfg = cfg or configs_for(d, q.element_size())
    return _LocalAttention.apply(q, k, v, cu, groups, w, full_w, scale, cfg)
