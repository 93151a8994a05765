"""The ``local`` backend on a CPU without Triton: the same circular-window function in plain torch.

Each event is cut into query blocks of ``BLOCK`` rows; a block attends to the ``BLOCK + 2w`` keys around it,
gathered with wrap-around (positions taken mod L), under one (BLOCK, BLOCK + 2w) band mask that is the same
for every block. So work and memory are O(N·(BLOCK + 2w)·H) instead of the O(L²) of ``dense``, and a 500k-hit
event runs on a laptop. When ``BLOCK + 2w > L`` the gathered range would repeat keys, so such (small) events
attend to their whole event with the exact circular-distance mask instead. Autograd works through plain ops.

Why the band is exact: for a block of queries [s, s + B) the gathered keys are the unwrapped positions
u = s − w … s + B − 1 + w. With B + 2w <= L these are distinct mod L, and any other representative u ± L of a
key lies at least L − (B − 1 + w) >= w + 1 away from every query of the block, so circular distance <= w holds
iff |i − u| <= w.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trackformers.attention.api import AttentionLayout

#: Query rows per block (the band has BLOCK + 2w keys).
BLOCK = 128
#: Score elements (blocks × heads × BLOCK × keys) processed at once: bounds the temporary memory.
CHUNK_ELEMENTS = 1 << 24


def band_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
                   scale: float) -> torch.Tensor:
    """q, k, v (N_total, H, D) φ-sorted and packed → (N_total, H, D); see the module docstring."""
    n, h, _ = q.shape
    out_rows: list[torch.Tensor] = []  # output positions and rows, scattered once at the end: one copy
    out_values: list[torch.Tensor] = []
    w = layout.window
    cu = layout.cu_seqlens.tolist()
    blocks: list[tuple[int, int, int]] = []  # (event start, event length, block start in the event)
    for start, end in zip(cu[:-1], cu[1:]):
        length = end - start
        if length == 0:
            continue
        if w is None or BLOCK + 2 * w > length:
            _whole_event(q, k, v, layout, scale, start, end, out_rows, out_values)
        else:
            blocks += [(start, length, s) for s in range(0, length, BLOCK)]
    if blocks:
        _banded(q, k, v, layout, scale, torch.tensor(blocks, device=q.device), out_rows, out_values)
    out = q.new_zeros(n, h, v.shape[-1])
    if out_rows:
        out = out.index_put((torch.cat(out_rows),), torch.cat(out_values))
    return out


def _banded(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout, scale: float,
            blocks: torch.Tensor, out_rows: list[torch.Tensor], out_values: list[torch.Tensor]) -> None:
    w = int(layout.window)  # type: ignore[arg-type]
    n_keys = BLOCK + 2 * w
    rows = torch.arange(BLOCK, device=q.device)
    cols = torch.arange(n_keys, device=q.device)
    band = (rows[:, None] + w - cols[None, :]).abs() <= w  # (BLOCK, n_keys): same for every block
    per_chunk = max(1, CHUNK_ELEMENTS // (q.shape[1] * BLOCK * n_keys))
    for c in range(0, len(blocks), per_chunk):
        start, length, s = blocks[c:c + per_chunk].unbind(1)
        q_local = s[:, None] + rows  # (c, BLOCK) positions in the event; the last block may overhang
        valid = q_local < length[:, None]
        q_idx = start[:, None] + torch.minimum(q_local, length[:, None] - 1)
        k_idx = start[:, None] + torch.remainder(s[:, None] - w + cols, length[:, None])
        qb, kb, vb = (t[i].transpose(1, 2) for t, i in ((q, q_idx), (k, k_idx), (v, k_idx)))  # (c, H, ·, D)
        mask = band
        if layout.groups is not None:
            g = layout.groups
            mask = band & (g[q_idx][:, :, None] == g[k_idx][:, None, :])  # (c, BLOCK, n_keys)
            mask = mask[:, None]
        ob = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, scale=scale).transpose(1, 2)
        out_rows.append(q_idx[valid])
        out_values.append(ob[valid])


def _whole_event(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout, scale: float,
                 start: int, end: int, out_rows: list[torch.Tensor], out_values: list[torch.Tensor]) -> None:
    """Attention inside one event with the exact circular-window mask, queries in chunks of bounded size."""
    length = end - start
    ke, ve = (t[start:end].transpose(0, 1) for t in (k, v))  # (H, L, D)
    keys = torch.arange(length, device=q.device)
    rows_per_chunk = max(1, CHUNK_ELEMENTS // (q.shape[1] * length))
    for r0 in range(0, length, rows_per_chunk):
        r1 = min(length, r0 + rows_per_chunk)
        qi = torch.arange(r0, r1, device=q.device)
        mask = None
        if layout.window is not None and 2 * layout.window + 1 < length:
            d = (qi[:, None] - keys[None, :]).abs()
            mask = torch.minimum(d, length - d) <= layout.window
        if layout.groups is not None:
            g = layout.groups[start:end]
            same = g[r0:r1, None] == g[None, :]
            mask = same if mask is None else mask & same
        qe = q[start + r0:start + r1].transpose(0, 1)
        oe = F.scaled_dot_product_attention(qe, ke, ve, attn_mask=mask, scale=scale)
        out_rows.append(start + qi)
        out_values.append(oe.transpose(0, 1))
