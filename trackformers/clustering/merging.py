"""Fragment re-merging after track cleaning: tracks of one particle that clustering (or the split) cut apart.

Every track of >= ``min_hits`` hits gets the helix from the beam line of :func:`cleaning.fit_helices` as
four parameters (shape (G,) each): signed curvature κ (1/mm, > 0 turning counter-clockwise seen from +z),
φ0 (rad, the direction at the origin), z0 (mm) and cotθ, with errors from a linearised least-squares fit of
independent hits with transverse error ``sigma_t`` and z error ``sigma_z`` (mm):

* transverse: a hit at radius r of the circle through the origin has azimuth φ0 + asin(κr/2), so its
  displacement across the track has derivatives r (φ0) and r²/(2·sqrt(1 − (κr/2)²)) (κ): C_t = σ_t²(JᵀJ)⁻¹;
* longitudinal: z = z0 + cotθ·s (s the arc length): C_z = σ_z²(JᵀJ)⁻¹ with rows (1, s).

Two tracks are compatible when χ² = Δ_tᵀ(C_t,a + C_t,b)⁻¹Δ_t + Δ_zᵀ(C_z,a + C_z,b)⁻¹Δ_z <= ``max_chi2`` (Δφ0
wrapped into [−π, π)) and either their hits share no layer (``layer``) or the hits of both together fit one
helix within the cleaning cuts (max(res_t/max_t, res_z/max_z) <= 1, :func:`cleaning.fit_tracks`). Without
``layer``, or with ``always_fit``, the joint fit must pass in any case. Each track then merges with its
compatible partner of smallest χ² if that one's choice is the same track (mutual best: no chains of merges,
no dependence on the order of tracks); the merged track is the one of lower group index. ``rounds`` repeats
this (a particle in 2^k fragments needs k). Tracks whose hits sit at one radius have no direction and never
merge.

Candidate pairs come from a window in φ0, no loop over pairs: χ² >= Δφ0²/(σ²φ,a + σ²φ,b), so every
compatible pair lies within sqrt(2·max_chi2)·max(σφ,a, σφ,b) of each other; the track of larger σφ (then of
larger index) finds the other one in its window of the φ0-sorted tracks, repeated at ±2π for wrap-around.
"""
from __future__ import annotations

import numpy as np

from trackformers.clustering.cleaning import _residuals, fit_helices, fit_tracks


def helix_parameters(x: np.ndarray, y: np.ndarray, z: np.ndarray, group: np.ndarray, active: np.ndarray,
                     n_groups: int, sigma_t: float, sigma_z: float,
                     fit: tuple[np.ndarray, ...] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: parameters (G, 4) = (φ0 rad, κ 1/mm, z0 mm, cotθ), covariances (G, 4, 4) (block diagonal:
    (φ0, κ) and (z0, cotθ)) of the group's active hits, and whether (φ0, κ) are determined at all, (G,) bool:
    hits at one radius (one barrel layer; 1 − corr² of the Jacobian's columns < 1e-4, i.e. radii spread by
    less than ~1%) fit every direction, so such a track never merges; see the module docstring. ``fit``:
    :func:`~trackformers.clustering.cleaning.fit_helices`' result for these arguments, when already computed."""
    nx, ny, rho0, z0, slope = fit_helices(x, y, z, group, active, n_groups) if fit is None else fit
    a = active.astype(np.float64)

    def seg(values: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=a * values, minlength=n_groups)

    # direction at the origin: the tangent (±(−ny, nx)) pointing towards the hits
    side = np.sign(-ny * seg(x) + nx * seg(y))
    tx, ty = -ny * np.where(side < 0, -1.0, 1.0), nx * np.where(side < 0, -1.0, 1.0)
    kappa = 2.0 * rho0 * (tx * ny - ty * nx)  # centre n/(2ρ0) left of the direction: counter-clockwise
    params = np.stack([np.arctan2(ty, tx), kappa, z0, slope], 1)
    r2 = x * x + y * y
    _, s = _residuals(x, y, z, nx[group], ny[group], rho0[group])
    half = np.minimum(np.abs(kappa[group]) * np.sqrt(r2) / 2.0, 0.995)
    jk = r2 / (2.0 * np.sqrt(1.0 - half * half))
    cov, determined = np.zeros((n_groups, 4, 4)), np.ones(n_groups, bool)
    for block, (j0, j1), sigma in ((0, (np.sqrt(r2), jk), sigma_t), (2, (np.ones_like(s), s), sigma_z)):
        m00, m01, m11 = seg(j0 * j0), seg(j0 * j1), seg(j1 * j1)
        det = np.maximum(m00 * m11 - m01 * m01, 1e-12 * np.maximum(m00 * m11, 1e-300))
        if block == 0:
            determined = det >= 1e-4 * m00 * m11
        inv = np.stack([m11, -m01, -m01, m00], 1).reshape(-1, 2, 2) / det[:, None, None]
        cov[:, block:block + 2, block:block + 2] = sigma * sigma * inv
    return params, cov, determined


def pair_chi2(params: np.ndarray, cov: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """χ² of the parameter difference of the group pairs (a, b), shape (P,), with the two 2×2 blocks."""
    d = params[a] - params[b]
    d[:, 0] = (d[:, 0] + np.pi) % (2.0 * np.pi) - np.pi
    c = cov[a] + cov[b]
    out = np.zeros(len(a))
    for k in (0, 2):
        c00, c01, c11, d0, d1 = c[:, k, k], c[:, k, k + 1], c[:, k + 1, k + 1], d[:, k], d[:, k + 1]
        det = np.maximum(c00 * c11 - c01 * c01, 1e-300)
        out += (c11 * d0 * d0 - 2.0 * c01 * d0 * d1 + c00 * d1 * d1) / det
    return out


def _ranges(start: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [start, start + count): (which range, position) of every element, concatenated."""
    which = np.repeat(np.arange(len(count)), count)
    first = np.cumsum(count) - count
    return which, np.arange(int(count.sum())) - first[which] + start[which]


def candidate_pairs(phi0: np.ndarray, sigma_phi: np.ndarray, eligible: np.ndarray,
                    max_chi2: float) -> tuple[np.ndarray, np.ndarray]:
    """Group pairs (a, b), a != b, each once, that include every eligible pair with χ² <= ``max_chi2``."""
    g = np.flatnonzero(eligible)
    if len(g) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = g[np.argsort(phi0[g], kind="stable")]
    ext = np.r_[phi0[order] - 2.0 * np.pi, phi0[order], phi0[order] + 2.0 * np.pi]
    half = np.minimum(np.sqrt(2.0 * max_chi2) * sigma_phi[g] * (1.0 + 1e-9) + 1e-12, np.pi)
    lo, hi = np.searchsorted(ext, phi0[g] - half, "left"), np.searchsorted(ext, phi0[g] + half, "right")
    which, pos = _ranges(lo, hi - lo)
    a, b = g[which], order[pos % len(order)]
    keep = (sigma_phi[b] < sigma_phi[a]) | ((sigma_phi[b] == sigma_phi[a]) & (b < a))
    a, b, whole = a[keep], b[keep], (half >= np.pi)[which[keep]]
    if whole.any():  # only a window of ±π can hold a track twice (few tracks: the unique is cheap)
        key = np.unique(a[whole] * len(phi0) + b[whole])
        a, b = np.r_[a[~whole], key // len(phi0)], np.r_[b[~whole], key % len(phi0)]
    return a, b


def shared_layers(group: np.ndarray, layer: np.ndarray, active: np.ndarray, a: np.ndarray,
                  b: np.ndarray) -> np.ndarray:
    """Number of layers holding active hits of both group a and group b, per pair, shape (P,)."""
    lay = np.unique(layer[active], return_inverse=True)[1].ravel()
    n_lay = int(lay.max(initial=-1)) + 1
    keys = np.unique(group[active].astype(np.int64) * n_lay + lay)  # (group, layer) present
    kg, kl = keys // max(n_lay, 1), keys % max(n_lay, 1)
    start = np.searchsorted(kg, a)
    which, pos = _ranges(start, np.searchsorted(kg, a, "right") - start)  # the layers of a, per pair
    probe = b[which] * n_lay + kl[pos]
    found = keys[np.minimum(np.searchsorted(keys, probe), len(keys) - 1)] == probe
    return np.bincount(which[found], minlength=len(a))


def joint_fit_ok(x: np.ndarray, y: np.ndarray, z: np.ndarray, group: np.ndarray, active: np.ndarray,
                 a: np.ndarray, b: np.ndarray, max_t: float, max_z: float) -> np.ndarray:
    """Per pair: do the active hits of groups a and b together fit one helix within the cuts? Shape (P,)."""
    idx = np.flatnonzero(active)
    idx = idx[np.argsort(group[idx], kind="stable")]
    count = np.bincount(group[idx], minlength=int(max(a.max(initial=0), b.max(initial=0))) + 1)
    start = np.cumsum(count) - count
    wa, pa = _ranges(start[a], count[a])
    wb, pb = _ranges(start[b], count[b])
    pair, hits = np.r_[wa, wb], idx[np.r_[pa, pb]]
    res_t, res_z = fit_tracks(x[hits], y[hits], z[hits], pair, np.ones(len(hits), bool), len(a))
    order = np.argsort(pair, kind="stable")
    first = np.cumsum(count[a] + count[b]) - (count[a] + count[b])  # every pair holds hits
    return np.maximum.reduceat(np.maximum(res_t / max_t, res_z / max_z)[order], first) <= 1.0


def merge_groups(x: np.ndarray, y: np.ndarray, z: np.ndarray, group: np.ndarray, active: np.ndarray,
                 n_groups: int, *, layer: np.ndarray | None, max_t: float, max_z: float, min_hits: int,
                 rounds: int, max_chi2: float, sigma_t: float, sigma_z: float, always_fit: bool = False) -> np.ndarray:
    """``group`` (shape (N,)) after ``rounds`` rounds of mutual-best merging of the tracks of >= ``min_hits``
    active hits (a merged group takes the lower index; inactive hits move with their group). ``always_fit``:
    the joint helix fit must pass for tracks without a common layer too."""
    group = group.copy()
    for _ in range(rounds):
        params, cov, determined = helix_parameters(x, y, z, group, active, n_groups, sigma_t, sigma_z)
        eligible = (np.bincount(group[active], minlength=n_groups) >= min_hits) & determined
        a, b = candidate_pairs(params[:, 0], np.sqrt(cov[:, 0, 0]), eligible, max_chi2)
        var = np.stack([cov[:, k, k] for k in range(4)], 1)  # cheap necessary cut on each parameter alone first
        d = np.abs(params[a] - params[b])
        d[:, 0] = np.minimum(d[:, 0], 2.0 * np.pi - d[:, 0])
        near = (d * d <= max_chi2 * (var[a] + var[b]) * (1.0 + 1e-9)).all(1)
        a, b = a[near], b[near]
        chi2 = pair_chi2(params, cov, a, b)
        a, b, chi2 = a[chi2 <= max_chi2], b[chi2 <= max_chi2], chi2[chi2 <= max_chi2]
        apart = shared_layers(group, layer, active, a, b) == 0 if layer is not None else np.zeros(len(a), bool)
        test = ~apart | always_fit
        fits = np.ones(len(a), bool)
        fits[test] = joint_fit_ok(x, y, z, group, active, a[test], b[test], max_t, max_z)
        a, b, chi2 = a[fits], b[fits], chi2[fits]
        if len(a) == 0:
            break
        src, dst, c2 = np.r_[a, b], np.r_[b, a], np.r_[chi2, chi2]
        order = np.lexsort((dst, c2, src))  # per track: smallest χ², then lowest partner index
        first = order[np.r_[True, src[order][1:] != src[order][:-1]]]
        best = np.full(n_groups, -1)
        best[src[first]] = dst[first]
        mutual = (best[a] == b) & (best[b] == a)
        target = np.arange(n_groups)
        target[np.maximum(a, b)[mutual]] = np.minimum(a, b)[mutual]
        group = target[group]
    return group
