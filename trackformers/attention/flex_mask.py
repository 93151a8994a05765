"""FlexAttention BlockMasks for packed events, built from block indices (no N² work).

The packed batch is ONE sequence (B = 1) of ``n_pad`` positions: the events' φ-sorted hits back to back,
then padding up to a bucketed length (:func:`padded_length`). Padding belongs to no event (event id -1),
so it never attends nor is attended to.

Per-position tensors (``doc``: event id, ``elen``: length of that event) feed the ``mask_mod`` — the exact
element-wise rule — while :func:`block_indices` lists, for every 128-row query block, the key blocks with at
least one allowed pair, split into *full* blocks (every pair allowed: the kernel skips ``mask_mod``) and
*partial* ones (``mask_mod`` applied). The lists come from interval arithmetic on (query block, event) pairs:
O(N/128 + E) pairs, each giving at most two key-block intervals; the work is proportional to the number of
listed blocks, not to N². (BlockMask itself stores (n_blocks, n_blocks) int32 index tables, i.e. N²/16384
entries — 4 MiB at 131k hits — and ``from_kv_blocks`` transposes them; that is torch's format.)

:func:`build_block_mask_eager` builds the same mask with ``create_block_mask`` (O(N²) evaluations of the
``mask_mod``): the reference for the fast build in tests and the comparison point in benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.nn.attention.flex_attention import BlockMask, create_block_mask

from trackformers.attention.api import AttentionLayout
from trackformers.attention.sorting import event_ids

#: Query and key block size of the BlockMask (FlexAttention's default tile).
BLOCK = 128

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def padded_length(n: int) -> int:
    """Bucketed sequence length ≥ n: a multiple of 128, then four steps per octave (≤ 25 % padding).

    1..1024 hits → each multiple of 128; above, block counts {4, 5, 6, 7}·2^k, so e.g. 131 072 hits stay
    131 072 and 131 073 become 163 840. Few distinct lengths → few compilations.
    """
    blocks = max(1, -(-n // BLOCK))
    if blocks > 8:
        step = 1 << (blocks.bit_length() - 3)
        blocks = -(-blocks // step) * step
    return blocks * BLOCK


def total_length(layout: AttentionLayout) -> int:
    """Number of packed hits ``cu_seqlens[-1]`` (one host synchronisation)."""
    return int(layout.cu_seqlens[-1]) if layout.cu_seqlens.numel() else 0


def position_tensors(layout: AttentionLayout, n_pad: int,
                     device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_pad,) int32 event id per position (-1 on padding) and (n_pad,) int32 length of that event (0)."""
    cu = layout.cu_seqlens.to(device=device, dtype=torch.int64)
    n = total_length(layout)
    lengths = cu[1:] - cu[:-1]
    ev = event_ids(cu, n)
    doc = torch.full((n_pad,), -1, dtype=torch.int32, device=device)
    elen = torch.zeros(n_pad, dtype=torch.int32, device=device)
    doc[:n] = ev.to(torch.int32)
    elen[:n] = lengths[ev].to(torch.int32)
    return doc, elen


def make_mask_mod(layout: AttentionLayout, n_pad: int, device: torch.device | str) -> MaskMod:
    """The element-wise rule: same event (not padding), circular window, same group, ΔR cone.

    The cone is evaluated in float32 (no float64 in the GPU kernel), with φ in (−π, π] as everywhere in the
    project: |Δφ| ≤ 2π, wrapped as min(|Δφ|, 2π − |Δφ|).
    """
    doc, elen = position_tensors(layout, n_pad, device)
    n = total_length(layout)
    window = layout.window
    groups = eta = phi = None
    if layout.groups is not None:
        groups = torch.full((n_pad,), -1, dtype=torch.int64, device=device)
        groups[:n] = layout.groups.to(device=device, dtype=torch.int64)
    cone2 = None
    if layout.cone is not None:
        if layout.eta_phi is None:
            raise ValueError("a ΔR cone needs layout.eta_phi")
        ep = torch.zeros(n_pad, 2, dtype=torch.float32, device=device)
        ep[:n] = layout.eta_phi.to(device=device, dtype=torch.float32)
        eta, phi = ep[:, 0].contiguous(), ep[:, 1].contiguous()
        cone2 = float(layout.cone) ** 2
    two_pi = 2 * math.pi

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        dq = doc[q_idx]
        ok = (dq == doc[kv_idx]) & (dq >= 0)
        if window is not None:
            # Within one event |q - kv| is the distance in sorted positions; wrap-around is L - d.
            # When 2w + 1 >= L this is always true (min(d, L - d) <= L // 2 <= w): full attention.
            d = (q_idx - kv_idx).abs()
            ok = ok & (torch.minimum(d, elen[q_idx] - d) <= window)
        if groups is not None:
            ok = ok & (groups[q_idx] == groups[kv_idx])
        if cone2 is not None:
            deta = eta[q_idx] - eta[kv_idx]
            dphi = (phi[q_idx] - phi[kv_idx]).abs()
            dphi = torch.minimum(dphi, two_pi - dphi)
            ok = ok & (deta * deta + dphi * dphi <= cone2)
        return ok

    return mask_mod


def _expand(lo: torch.Tensor, hi: torch.Tensor, owner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer intervals [lo, hi] (empty if hi < lo) → (owner, value) for every value they contain."""
    counts = (hi - lo + 1).clamp_min(0)
    idx = torch.repeat_interleave(torch.arange(lo.numel(), device=lo.device), counts)
    first = torch.cumsum(counts, 0) - counts
    return owner[idx], lo[idx] + torch.arange(idx.numel(), device=lo.device) - first[idx]


def block_indices(layout: AttentionLayout, n_pad: int, device: torch.device | str
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """BlockMask tables (partial_num, partial_idx, full_num, full_idx), shapes (1, 1, nb) and (1, 1, nb, nb).

    Row qb lists, in increasing order, the key blocks of query block qb (nb = n_pad / 128).
    """
    nb = n_pad // BLOCK
    cu = layout.cu_seqlens.to(device=device, dtype=torch.int64)
    lengths = cu[1:] - cu[:-1]
    keep = lengths > 0
    starts, lengths = cu[:-1][keep], lengths[keep]
    ends = starts + lengths
    w = layout.window
    whole = torch.ones_like(lengths, dtype=torch.bool) if w is None else 2 * w + 1 >= lengths

    # (query block, event) pairs: every query block each event overlaps.
    qb_first, qb_last = starts // BLOCK, (ends - 1) // BLOCK
    pair_ev, pair_qb = _expand(qb_first, qb_last, torch.arange(starts.numel(), device=device))
    s, length = starts[pair_ev], lengths[pair_ev]
    a0 = torch.clamp(pair_qb * BLOCK, min=s) - s  # local query range [a0, a1] of the pair
    a1 = torch.clamp(pair_qb * BLOCK + BLOCK, max=s + length) - 1 - s
    # Keys allowed for some query of the pair: the circular arc [a0 - w, a1 + w] of the event, or all of it.
    ww = 0 if w is None else w
    lo, hi = a0 - ww, a1 + ww
    everything = whole[pair_ev] | (hi - lo + 1 >= length)
    lo = torch.where(everything, 0, lo)
    hi = torch.where(everything, length - 1, hi)
    main_lo, main_hi = lo.clamp_min(0), torch.minimum(hi, length - 1)
    # The part of the arc that wraps past either end of the event (at most one side, as the arc < L).
    wrap_lo = torch.where(lo < 0, lo + length, 0)
    wrap_hi = torch.where(lo < 0, length - 1, hi - length)
    iv_lo = torch.cat([main_lo, wrap_lo]) + torch.cat([s, s])
    iv_hi = torch.cat([main_hi, wrap_hi]) + torch.cat([s, s])
    valid = torch.cat([main_hi >= main_lo, wrap_hi >= wrap_lo])
    kb_lo = torch.where(valid, iv_lo // BLOCK, 1)
    kb_hi = torch.where(valid, iv_hi // BLOCK, 0)
    qb, kb = _expand(kb_lo, kb_hi, torch.cat([pair_qb, pair_qb]))
    key = torch.unique(qb * nb + kb)  # sorted, deduplicated (a block may be reached via two events)
    qb, kb = key // nb, key % nb

    if layout.has_extra_masks:  # groups / cone: no tile is known to be full without evaluating mask_mod
        full = torch.zeros_like(qb, dtype=torch.bool)
    else:
        full = _full_tiles(qb, kb, starts, ends, whole, w)
    partial_num, partial_idx = _pack(qb[~full], kb[~full], nb)
    full_num, full_idx = _pack(qb[full], kb[full], nb)
    return partial_num, partial_idx, full_num, full_idx


def _full_tiles(qb: torch.Tensor, kb: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor,
                whole: torch.Tensor, w: int | None) -> torch.Tensor:
    """Which (qb, kb) tiles have every pair allowed (conservative: False is always safe)."""

    def event_of(first: torch.Tensor) -> torch.Tensor:  # event holding the whole block, else -1
        ev = torch.searchsorted(ends, first, right=True)
        evc = ev.clamp_max(ends.numel() - 1)
        inside = (ev < ends.numel()) & (first >= starts[evc]) & (first + BLOCK <= ends[evc])
        return torch.where(inside, evc, -1)

    eq, ek = event_of(qb * BLOCK), event_of(kb * BLOCK)
    same = (eq >= 0) & (eq == ek)
    e = eq.clamp_min(0)
    s, length = starts[e], ends[e] - starts[e]
    a0, b0 = qb * BLOCK - s, kb * BLOCK - s
    a1, b1 = a0 + BLOCK - 1, b0 + BLOCK - 1
    if w is None:
        return same
    linear = torch.maximum(a1 - b0, b1 - a0) <= w  # every |a - b| <= w
    wrap_right = (b0 > a1) & (length - (b0 - a1) <= w)  # keys after queries, reached around the end
    wrap_left = (a0 > b1) & (length - (a0 - b1) <= w)
    return same & (whole[e] | linear | wrap_right | wrap_left)


def _pack(qb: torch.Tensor, kb: torch.Tensor, nb: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (qb, kb) entries → (1, 1, nb) int32 counts and (1, 1, nb, nb) int32 ordered indices."""
    counts = torch.bincount(qb, minlength=nb)
    rank = torch.arange(qb.numel(), device=qb.device) - (torch.cumsum(counts, 0) - counts)[qb]
    idx = torch.zeros(nb, nb, dtype=torch.int32, device=qb.device)
    idx[qb, rank] = kb.to(torch.int32)
    return counts.to(torch.int32)[None, None], idx[None, None]


def build_block_mask(layout: AttentionLayout, device: torch.device | str,
                     n_pad: int | None = None) -> BlockMask:
    """BlockMask of ``layout`` over n_pad (default :func:`padded_length`) positions, from block indices."""
    n_pad = padded_length(total_length(layout)) if n_pad is None else n_pad
    if n_pad % BLOCK:
        raise ValueError(f"n_pad must be a multiple of {BLOCK}; got {n_pad}")
    partial_num, partial_idx, full_num, full_idx = block_indices(layout, n_pad, device)
    mask = BlockMask.from_kv_blocks(partial_num, partial_idx, full_num, full_idx, BLOCK_SIZE=BLOCK,
                                    mask_mod=make_mask_mod(layout, n_pad, device), seq_lengths=(n_pad, n_pad),
                                    compute_q_blocks=False)
    # The backward pass iterates over query blocks per key block: the transposed tables. Every rule here
    # (same event, circular distance, same group, ΔR) is symmetric in (q, kv) and so is the full-tile test,
    # so the transpose is the table itself — no (nb, nb) dense transpose as from_kv_blocks would do.
    mask.q_num_blocks, mask.q_indices = partial_num, partial_idx
    mask.full_q_num_blocks, mask.full_q_indices = full_num, full_idx
    return mask


def build_block_mask_eager(layout: AttentionLayout, device: torch.device | str,
                           n_pad: int | None = None, *, compiled: bool | None = None) -> BlockMask:
    """The same BlockMask via ``create_block_mask`` (evaluates ``mask_mod`` on all n_pad² pairs).

    ``compiled`` (default: on CUDA) passes ``_compile=True``: uncompiled, create_block_mask materialises the
    n_pad² mask (128 GiB of int64 indices at 131k hits: out of memory on an 80 GB H100, measured).
    """
    n_pad = padded_length(total_length(layout)) if n_pad is None else n_pad
    compiled = torch.device(device).type == "cuda" if compiled is None else compiled
    return create_block_mask(make_mask_mod(layout, n_pad, device), 1, None, n_pad, n_pad, device=device,
                             BLOCK_SIZE=BLOCK, _compile=compiled)
