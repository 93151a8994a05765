"""TrackML hit weights (phase 1 of the challenge), for events whose truth carries none.

weight(hit) = w_pt(pT of its particle) * w_order(position of the hit along its particle), renormalised to
sum 1 over the event. w_pt = interp(pT, [0.05, 0.5, 3] GeV, [0.2, 0.2, 1]), 0 below 0.05 GeV, 1 above 3.
w_order interpolates [10, 8, 6, 5, 3, 3, 3, 5, 6] over the particle's n hits (sorted by |tz − vz|), each row
normalised to sum 1; particles with fewer than 4 hits, and noise, weigh 0; a particle's 21st and later hits
weigh 0 (rows stop at 20 hits, as in the challenge).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackformers.metrics.kinematics import particle_table

ORDER_PROPOSAL = (10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0)
ORDER_MIN_HITS = 4
ORDER_MAX_HITS = 20


def order_weight_matrix(proposal: tuple[float, ...] = ORDER_PROPOSAL, min_hits: int = ORDER_MIN_HITS,
                        max_hits: int = ORDER_MAX_HITS) -> np.ndarray:
    """Matrix ``W[nhits, ihit]``, shape ``(max_hits + 1, max_hits)``; rows from ``min_hits`` on sum to 1."""
    w = np.zeros((max_hits + 1, max_hits))
    for nhits in range(min_hits, max_hits + 1):  # 17 rows: a loop over sizes, not over hits
        supports = np.arange(len(proposal)) * (nhits - 1) / (len(proposal) - 1)
        row = np.interp(np.arange(nhits), supports, proposal)
        w[nhits, :nhits] = row / row.sum()
    return w


ORDER_MATRIX = order_weight_matrix()


def weight_pt(pt: np.ndarray) -> np.ndarray:
    """Transverse-momentum weight of shape ``pt.shape`` (pt in GeV)."""
    return np.interp(pt, [0.05, 0.5, 3.0], [0.2, 0.2, 1.0], left=0.0, right=1.0)


def hit_order(group: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Index of each element within its ``group`` when sorted by ``key`` (both shape (N,)).

    Exact ties get the truncated average rank, as pandas ``rank()`` does in the challenge's code.
    """
    n = len(group)
    order = np.lexsort((key, group))
    g, k = group[order], key[order]
    new_group = np.r_[True, g[1:] != g[:-1]] if n else np.zeros(0, bool)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0)) if n else np.zeros(0, np.int64)
    new_run = new_group | np.r_[True, k[1:] != k[:-1]] if n else np.zeros(0, bool)
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_end = np.r_[run_start[1:], n] - 1
    pos = (run_start[run_id] + run_end[run_id]) // 2 - group_start
    out = np.empty(n, dtype=np.int64)
    out[order] = pos
    return out


def hit_weights(*, truth: pd.DataFrame, particles: pd.DataFrame | None = None) -> np.ndarray:
    """TrackML weight of every truth row, shape ``(len(truth),)`` float64, summing to 1 (or all 0).

    A particle's hit count is the number of its truth rows (so a volume selection is honoured); pT and vz come
    from ``particles`` (see :func:`trackformers.metrics.kinematics.particle_table` when it is None). Particles
    absent from ``particles`` weigh 0. An event without any weighted hit (e.g. all noise) gets all zeros.
    """
    pid = truth["particle_id"].to_numpy(np.int64)
    if not len(pid):
        return np.zeros(0)
    uniq, p_idx = np.unique(pid, return_inverse=True)
    nhits = np.bincount(p_idx)
    table = particle_table(truth=truth, particles=particles).reindex(uniq)
    pt = table["pt"].to_numpy(np.float64)
    vz = table["vz"].to_numpy(np.float64)
    w_pt = np.where(np.isfinite(pt) & (uniq != 0), weight_pt(np.nan_to_num(pt)), 0.0)
    dz = np.abs(truth["tz"].to_numpy(np.float64) - np.nan_to_num(vz)[p_idx])
    ihit = hit_order(p_idx, dz)
    n = np.minimum(nhits[p_idx], ORDER_MAX_HITS)
    w_order = np.where(ihit < ORDER_MAX_HITS, ORDER_MATRIX[n, np.minimum(ihit, ORDER_MAX_HITS - 1)], 0.0)
    w = w_pt[p_idx] * w_order
    total = w.sum()
    return w / total if total > 0 else w
