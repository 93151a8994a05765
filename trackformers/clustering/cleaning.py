"""Track cleaning after clustering: helix-consistency fit per track, splitting, iterative outlier removal.

Every track candidate of >= ``min_hits`` hits is fitted, all tracks at once (numpy segment sums, no Python
loop over tracks), with a helix from the origin (the beam line; the solenoid field is along +z):

* transverse: a circle through the origin. The conformal map u = x/r², v = y/r² (r² = x² + y²) turns the
  circle x² + y² − 2ax − 2by = 0 into the line 2a·u + 2b·v = 1, i.e. n·(u, v) = ρ0 (unit normal n, offset
  ρ0 = 1/(2R) >= 0, centre n·R); a straight track is the line ρ0 = 0, no special case. The line is an
  orthogonal least-squares fit in (u, v) with weights r⁴: about the geometric least-squares circle (a
  distance d in (u, v) is about d·r² mm in (x, y)). Residual |distance to centre − R| (mm), in a form
  without cancellation for huge R.
* longitudinal: a line z = z0 + cotθ·s, ordinary least squares, s the transverse arc length from the
  origin along the circle, s = 2R·asin(r/(2R)) (= r when straight; r/(2R) clipped at 1). Residual |Δz| (mm).

``split`` rounds first (RANSAC): per track, helices from the origin through up to 32 pairs of its hits;
when the one with the most hits within the cuts holds >= ``min_hits``, the track keeps those and its other
hits become a new track (a track that merged several particles is split into them). Then each of
``iterations`` rounds removes, per track, the single worst hit if max(res_t/max_transverse_mm,
res_z/max_z_mm) > 1, and refits. Removed hits, and all hits of a track left with < ``min_hits``, become
singletons (fresh ids above the largest input id); ``reject=True`` also dissolves a track still failing
the cut after the last round. Tracks with < ``min_hits`` hits to begin with keep their ids. ``merge``
rounds then join fragments of one particle (:mod:`trackformers.clustering.merging`: helix parameters equal
within their errors, and no layer in common or one helix through both). The result does not depend on the
row order (up to the numbering of fresh ids): the split's seed pairs rank the hits by r², z, x, y. Last,
``drop_one_radius`` dissolves tracks whose hits all sit at one radius.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: Keyword arguments of :func:`clean_tracks` that :func:`check_params` accepts (the ``--clean-param`` keys).
PARAMS: tuple[str, ...] = ("max_transverse_mm", "max_z_mm", "min_hits", "iterations", "reject", "split", "merge",
                           "merge_chi2", "sigma_transverse_mm", "sigma_z_mm", "merge_fit",
                           "drop_one_radius")


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against :data:`PARAMS`; InputError naming an unknown key or a bad value."""
    from trackformers.errors import InputError

    for key, value in params.items():
        low = 3 if key == "min_hits" else 0
        if key not in PARAMS:
            raise InputError(f"cleaning parameter {key}={value!r}: unknown; expected one of {', '.join(PARAMS)}.")
        flag = key in ("reject", "drop_one_radius", "merge_fit")
        if isinstance(value, bool) != flag:
            raise InputError(f"cleaning parameter {key}={value!r}: expected " + ("true or false." if flag
                             else "a number."))
        if (key.endswith("_mm") or key == "merge_chi2") and not (isinstance(value, int | float) and value > 0):
            unit = " of mm" if key.endswith("_mm") else ""  # merge_chi2 is a χ², not a length
            raise InputError(f"cleaning parameter {key}={value!r}: expected a positive number{unit}.")
        if key in ("min_hits", "iterations", "split", "merge") and not (isinstance(value, int) and value >= low):
            raise InputError(f"cleaning parameter {key}={value!r}: expected an integer >= {low}.")
    return dict(params)


def _residuals(x: np.ndarray, y: np.ndarray, z: np.ndarray, nx: np.ndarray, ny: np.ndarray, rho0: np.ndarray,
               z0: np.ndarray | None = None, slope: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Per hit (broadcasting): transverse residual (mm) to the circle n·(u, v) = ρ0, arc length s (mm), and
    with ``z0``, ``slope`` the z residual (mm)."""
    r2 = x * x + y * y
    k2 = 2.0 * rho0  # 1/R
    # distance to centre − R = (r²/R − 2 P·n) / (1 + |P/R − n|): no cancellation when R is huge
    res_t = np.abs((k2 * r2 - 2.0 * (x * nx + y * ny)) / (1.0 + np.hypot(k2 * x - nx, k2 * y - ny)))
    r = np.sqrt(r2)
    arg = np.minimum(rho0 * r, 1.0)
    # s = 2R·asin(r/(2R)); the series for nearly straight tracks (and R = ∞) avoids 0/0
    s = np.where(arg > 1e-4, np.arcsin(arg) / np.maximum(rho0, 1e-300), r * (1.0 + arg * arg / 6.0))
    if z0 is None or slope is None:
        return res_t, s
    return res_t, s, np.abs(z - z0 - slope * s)


def fit_helices(x: np.ndarray, y: np.ndarray, z: np.ndarray, group: np.ndarray, active: np.ndarray,
                n_groups: int) -> tuple[np.ndarray, ...]:
    """Per group (shape (G,)): the fitted circle n·(u, v) = ρ0 (unit normal ``nx``, ``ny``, ``rho0`` >= 0, 1/mm)
    and z line (``z0`` mm, ``slope`` = cotθ), from the group's active hits; see the module docstring."""
    r2 = x * x + y * y
    safe = np.where(r2 > 0, r2, 1.0)
    u, v = x / safe, y / safe  # a hit at r = 0 maps to (0, 0) with weight 0: it lies on every such circle
    w = np.where(active, r2 * r2, 0.0)

    def seg(values: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=values, minlength=n_groups)

    sw = np.maximum(seg(w), 1e-300)
    mu, mv = seg(w * u) / sw, seg(w * v) / sw
    du, dv = u - mu[group], v - mv[group]
    cuu, cuv, cvv = seg(w * du * du), seg(w * du * dv), seg(w * dv * dv)
    theta = 0.5 * np.arctan2(2.0 * cuv, cuu - cvv)  # direction of the line (major axis of the scatter)
    nx, ny = -np.sin(theta), np.cos(theta)  # its unit normal
    rho0 = nx * mu + ny * mv
    flip = rho0 < 0
    nx, ny, rho0 = np.where(flip, -nx, nx), np.where(flip, -ny, ny), np.abs(rho0)
    _, s = _residuals(x, y, z, nx[group], ny[group], rho0[group])
    a = active.astype(np.float64)
    n, ss, sz, sss, ssz = seg(a), seg(a * s), seg(a * z), seg(a * s * s), seg(a * s * z)
    det = n * sss - ss * ss
    ok = det > 1e-12 * np.maximum(n * sss, 1e-300)  # hits spread in s; else a flat line at the mean z
    slope = np.where(ok, (n * ssz - ss * sz) / np.where(ok, det, 1.0), 0.0)
    return nx, ny, rho0, (sz - slope * ss) / np.maximum(n, 1.0), slope


def fit_tracks(x: np.ndarray, y: np.ndarray, z: np.ndarray, group: np.ndarray, active: np.ndarray,
               n_groups: int, fit: tuple[np.ndarray, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fit every group's active hits; ``(res_t, res_z)`` of every hit (mm, shape (N,), inactive too).

    ``group``: dense track index per hit in [0, n_groups); ``active``: hits that take part in the fit; ``fit``:
    :func:`fit_helices`' result for these arguments when the caller has it already.
    """
    fit = fit_helices(x, y, z, group, active, n_groups) if fit is None else fit
    nx, ny, rho0, z0, slope = (p[group] for p in fit)
    res_t, _, res_z = _residuals(x, y, z, nx, ny, rho0, z0, slope)
    return res_t, res_z


def seed_pairs(counts: np.ndarray, candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks (a, b), a > b, shape (G, K), of the hit pairs that seed each group's candidate helices: K pairs
    spread evenly over the n(n−1)/2 pairs of a group of n = ``counts`` >= 2 hits (all of them when K >= that)."""
    n_pairs = counts[:, None] * (counts[:, None] - 1) // 2
    m = np.arange(candidates)[None, :] * n_pairs // candidates  # linear index of the pair (a, b), b < a
    a = np.floor((1.0 + np.sqrt(1.0 + 8.0 * m)) / 2.0).astype(np.int64)
    a -= a * (a - 1) // 2 > m  # float rounding guards
    a += (a + 1) * a // 2 <= m
    return a, m - a * (a - 1) // 2


def seed_inliers(x: np.ndarray, y: np.ndarray, z: np.ndarray, group: np.ndarray, active: np.ndarray,
                 n_groups: int, max_t: float, max_z: float, candidates: int = 32) -> np.ndarray:
    """RANSAC per group: helices from the origin through K pairs of its active hits (ranks from
    :func:`seed_pairs` into the hits sorted by r², then z, x, y: the same seeds whatever the row order); the
    active hits within the cuts of the candidate with the most such hits (first on ties). Bool mask, (N,)."""
    idx, out = np.flatnonzero(active), np.zeros(len(x), dtype=bool)
    if len(idx) == 0:
        return out
    r2 = np.maximum(x * x + y * y, 1e-300)
    idx = idx[np.lexsort((y[idx], x[idx], z[idx], r2[idx], group[idx]))]
    counts = np.bincount(group[idx], minlength=n_groups)
    start = np.cumsum(counts) - counts
    a, b = seed_pairs(np.maximum(counts, 2), candidates)
    ia, ib = idx[np.minimum(start[:, None] + a, len(idx) - 1)], idx[np.minimum(start[:, None] + b, len(idx) - 1)]
    du, dv = x[ib] / r2[ib] - x[ia] / r2[ia], y[ib] / r2[ib] - y[ia] / r2[ia]
    norm = np.maximum(np.hypot(du, dv), 1e-300)
    nx, ny = -dv / norm, du / norm  # normal of the conformal line through the pair
    rho0 = nx * x[ia] / r2[ia] + ny * y[ia] / r2[ia]
    nx, ny, rho0 = np.where(rho0 < 0, -nx, nx), np.where(rho0 < 0, -ny, ny), np.abs(rho0)
    _, sa = _residuals(x[ia], y[ia], z[ia], nx, ny, rho0)
    _, sb = _residuals(x[ib], y[ib], z[ib], nx, ny, rho0)
    ds = sb - sa
    slope = np.where(np.abs(ds) > 1e-9, (z[ib] - z[ia]) / np.where(np.abs(ds) > 1e-9, ds, 1.0), 0.0)
    z0 = z[ia] - slope * sa
    g = group[idx]
    res_t, _, res_z = _residuals(x[idx, None], y[idx, None], z[idx, None], nx[g], ny[g], rho0[g], z0[g], slope[g])
    inside = (res_t <= max_t) & (res_z <= max_z)
    cells = (g[:, None] * candidates + np.arange(candidates)).ravel()
    votes = np.bincount(cells, weights=inside.ravel(), minlength=n_groups * candidates).reshape(n_groups, -1)
    out[idx] = inside[np.arange(len(idx)), votes.argmax(1)[g]]
    return out


def clean_tracks(x: np.ndarray, y: np.ndarray, z: np.ndarray, track_id: np.ndarray, *,
                 max_transverse_mm: float = 1.0, max_z_mm: float = 2.0, min_hits: int = 3,
                 iterations: int = 2, reject: bool = False, split: int = 3, merge: int = 2,
                 merge_chi2: float = 36.0, sigma_transverse_mm: float = 1.0, sigma_z_mm: float = 5.0,
                 merge_fit: bool = False, drop_one_radius: bool = True, layer: np.ndarray | None = None) -> np.ndarray:
    """New track ids (int64, shape (N,)) after helix-consistency cleaning; see the module docstring. The
    defaults are the best TrackML score at μ = 20 of validation grids (benchmarks/results/cleaning_cpu.log,
    benchmarks/results/cleaning_merge_cpu.log).

    Args:
        x, y, z: hit positions in mm, shape (N,).
        track_id: integer track id per hit, shape (N,), any order, any values.
        max_transverse_mm: cut on the transverse residual (mm).
        max_z_mm: cut on the longitudinal residual (mm).
        min_hits: tracks with fewer hits are left as they are; a cleaned track that falls below it is dissolved.
        iterations: removal rounds (at most one hit per track each).
        reject: dissolve a track that still has a hit beyond the cut after the last round.
        split: rounds of splitting before the removal rounds: a track whose best seeded helix
            (:func:`seed_inliers`) holds >= ``min_hits`` hits keeps them; its other hits form a new track.
        merge: rounds of fragment re-merging after the removal rounds (:mod:`trackformers.clustering.merging`):
            tracks whose helices agree within ``merge_chi2`` and whose hits share no layer (or fit one helix
            within the cuts) merge; the merged track keeps the id of the lower original id.
        merge_chi2: χ² cut (4 parameters) of the helix comparison.
        sigma_transverse_mm, sigma_z_mm: per-hit errors (mm) behind the helix parameters' errors.
        merge_fit: merge only tracks whose hits fit one helix within the cuts (else tracks without a common
            layer merge on the χ² alone).
        drop_one_radius: dissolve tracks whose hits all sit at one radius (one barrel layer, or radii within
            ~1%: :func:`~trackformers.clustering.merging.helix_parameters` finds no direction); no particle
            leaves such a track, they are fakes (or duplicates) that any circle through the origin fits.
        layer: integer layer key per hit, shape (N,) (None: the joint helix fit decides alone).
    """
    ids, (x, y, z) = np.asarray(track_id).astype(np.int64), (np.asarray(c, dtype=np.float64) for c in (x, y, z))
    if ids.size == 0:
        return ids
    uniq, group = np.unique(ids, return_inverse=True)
    group, n_groups = group.ravel(), len(uniq)
    n_orig, touched = n_groups, (np.bincount(group, minlength=n_groups) >= min_hits)[group]
    changed = np.ones(n_groups, dtype=bool)  # groups whose hits changed (the others would split as before)
    for _ in range(split if touched.any() else 0):  # hits off a track's best seeded helix: new group g + n_groups
        inl = seed_inliers(x, y, z, group, touched & changed[group], n_groups, max_transverse_mm, max_z_mm)
        good = np.bincount(group, weights=inl.astype(np.float64), minlength=n_groups) >= min_hits
        move = touched & ~inl & good[group]
        changed = np.r_[np.bincount(group[move], minlength=n_groups) > 0, np.ones(n_groups, dtype=bool)]
        present, group = np.unique(np.where(move, group + n_groups, group), return_inverse=True)
        group, n_groups, changed = group.ravel(), len(present), changed[present]  # dense again, same order
    alive = np.bincount(group, weights=touched.astype(np.float64), minlength=n_groups) >= min_hits
    active = touched & alive[group]
    bad = np.zeros(n_groups, dtype=bool)
    for step in range(iterations + (1 if reject else 0)):
        res_t, res_z = fit_tracks(x, y, z, group, active, n_groups)
        score = np.where(active, np.maximum(res_t / max_transverse_mm, res_z / max_z_mm), -np.inf)
        order = np.lexsort((-score, group))  # per track, the worst hit first
        first = np.r_[True, group[order][1:] != group[order][:-1]]
        worst = order[first & (score[order] > 1.0)]
        if step == iterations:  # the extra pass of reject=True: judge, remove nothing
            bad[group[worst]] = True
            break
        active[worst] = False
        alive &= np.bincount(group, weights=active.astype(np.float64), minlength=n_groups) >= min_hits
        active &= alive[group]
    alive &= ~bad
    kept = active & alive[group]
    if merge:  # fragments of one particle back together (merging imports this module, hence here)
        from trackformers.clustering.merging import merge_groups

        group = merge_groups(x, y, z, group, kept, n_groups, layer=None if layer is None else np.asarray(layer),
                             max_t=max_transverse_mm, max_z=max_z_mm, min_hits=min_hits, rounds=merge,
                             max_chi2=merge_chi2, sigma_t=sigma_transverse_mm, sigma_z=sigma_z_mm,
                             always_fit=merge_fit)
    if drop_one_radius and kept.any():
        from trackformers.clustering.merging import helix_parameters

        kept &= helix_parameters(x, y, z, group, kept, n_groups, 1.0, 1.0)[2][group]
    single = touched & ~kept
    out, orig = ids.copy(), kept & (group < n_orig)
    out[orig] = uniq[group[orig]]  # a merged track: the id of its lower group
    new = kept & (group >= n_orig)  # split-off tracks: fresh ids in order of their group, then singletons
    _, rank = np.unique(group[new], return_inverse=True)
    out[new] = ids.max() + 1 + rank.ravel()
    out[single] = ids.max() + 1 + int(rank.max(initial=-1)) + 1 + np.arange(int(single.sum()), dtype=np.int64)
    return out


def clean_submission(hits: pd.DataFrame, submission: pd.DataFrame, **params: Any) -> pd.DataFrame:
    """``submission`` (DataFrame[hit_id, track_id]) with its track ids cleaned by :func:`clean_tracks`; the hit
    positions x, y, z (mm) come from ``hits`` (an event's hits table), matched by hit id, any row order; so
    do the layers for merging (volume_id, layer_id, when the table has them)."""
    from trackformers.clustering.track_features import hit_columns

    *xyz, layer = hit_columns(hits, submission["hit_id"].to_numpy(), where="track cleaning")
    if "layer" not in params and layer is not None:
        params["layer"] = layer
    ids = clean_tracks(*xyz, submission["track_id"].to_numpy(np.int64), **params)
    return pd.DataFrame({"hit_id": submission["hit_id"].to_numpy(), "track_id": ids})

