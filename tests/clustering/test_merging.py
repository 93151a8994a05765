"""Fragment re-merging: vectorised vs a plain per-pair reference, known answers, row-order independence."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackformers.clustering.cleaning import clean_submission, clean_tracks
from trackformers.clustering.merging import candidate_pairs, helix_parameters, merge_groups, shared_layers

# the per-track reference fit and the exact-helix generator of the cleaning tests (importlib mode: no plain import)
_spec = importlib.util.spec_from_file_location("_cleaning_tests", Path(__file__).with_name("test_cleaning.py"))
_cleaning_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cleaning_tests)
reference_fit = _cleaning_tests.reference_fit

CUTS = {"max_t": 1.0, "max_z": 2.0}


def reference_parameters(x, y, z, sigma_t: float, sigma_z: float) -> tuple[np.ndarray, np.ndarray]:
    """One track: (φ0, κ, z0, cotθ), their 4×4 covariance (eigh, lstsq, explicit Jacobians) and whether the
    Jacobian's (φ0, κ) columns are independent enough (1 − corr² >= 1e-4)."""
    r2 = x * x + y * y
    p = np.stack([x / r2, y / r2], 1)
    w = r2 * r2
    mean = (w[:, None] * p).sum(0) / w.sum()
    d = p - mean
    n = np.linalg.eigh((w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0))[1][:, 0]
    rho0 = float(n @ mean)
    if rho0 < 0:
        n, rho0 = -n, -rho0
    t = np.array([-n[1], n[0]])
    t = -t if t @ np.array([x.sum(), y.sum()]) < 0 else t
    kappa = 2.0 * rho0 * (t[0] * n[1] - t[1] * n[0])
    r = np.sqrt(r2)
    arg = min(rho0, 1e300) * r
    s = np.where(arg > 1e-4, np.arcsin(np.minimum(arg, 1.0)) / max(rho0, 1e-300), r * (1 + arg * arg / 6))
    design = np.stack([np.ones_like(s), s], 1)
    z0, cot = np.linalg.lstsq(design, z, rcond=None)[0] if np.ptp(s) > 1e-9 * s.max() else (z.mean(), 0.0)
    half = np.minimum(abs(kappa) * r / 2.0, 0.995)
    jt = np.stack([r, r2 / (2.0 * np.sqrt(1.0 - half * half))], 1)
    cov = np.zeros((4, 4))
    cov[:2, :2] = sigma_t**2 * np.linalg.inv(jt.T @ jt)
    cov[2:, 2:] = sigma_z**2 * np.linalg.inv(design.T @ design)
    normal = jt.T @ jt
    determined = 1.0 - normal[0, 1] ** 2 / (normal[0, 0] * normal[1, 1]) >= 1e-4
    return np.array([np.arctan2(t[1], t[0]), kappa, z0, cot]), cov, determined


def reference_merge(x, y, z, group, active, layer, *, min_hits=3, rounds=1, max_chi2=16.0, sigma_t=0.1,
                    sigma_z=0.5, max_t=1.0, max_z=2.0, always_fit=False) -> np.ndarray:
    """Loops over every pair of tracks (no φ0 window), then mutual best partners by (χ², partner index)."""
    group = group.copy()
    for _ in range(rounds):
        members = {g: np.flatnonzero((group == g) & active) for g in np.unique(group)}
        members = {g: m for g, m in members.items() if len(m) >= min_hits}
        fits = {g: reference_parameters(x[m], y[m], z[m], sigma_t, sigma_z) for g, m in members.items()}
        members = {g: m for g, m in members.items() if fits[g][2]}
        choices: dict[int, list[tuple[float, int]]] = {g: [] for g in members}
        for a in members:
            for b in members:
                if b <= a:
                    continue
                d = fits[a][0] - fits[b][0]
                d[0] = (d[0] + np.pi) % (2 * np.pi) - np.pi
                chi2 = float(d @ np.linalg.solve(fits[a][1] + fits[b][1], d))
                if chi2 > max_chi2:
                    continue
                if layer is None or always_fit or set(layer[members[a]]) & set(layer[members[b]]):
                    both = np.r_[members[a], members[b]]
                    res_t, res_z = reference_fit(x[both], y[both], z[both])
                    if max((res_t / max_t).max(), (res_z / max_z).max()) > 1.0:
                        continue
                choices[a].append((chi2, b))
                choices[b].append((chi2, a))
        best = {g: min(c)[1] for g, c in choices.items() if c}
        target = {b: a for a, b in best.items() if a < b and best.get(b) == a}
        if not target:
            break
        group = np.array([target.get(g, g) for g in group], dtype=np.int64)
    return group


def arc(phi0: float, kappa: float, z0: float, cot: float, s: np.ndarray):
    """Hits of the helix from the origin with direction φ0, signed curvature κ (1/mm), at arc lengths s (mm)."""
    turn = kappa * s
    x = np.where(abs(kappa) > 0, (np.sin(phi0 + turn) - np.sin(phi0)) / np.where(kappa, kappa, 1), s * np.cos(phi0))
    y = np.where(abs(kappa) > 0, (np.cos(phi0) - np.cos(phi0 + turn)) / np.where(kappa, kappa, 1), s * np.sin(phi0))
    return x, y, z0 + cot * s


def fragments(seed: int, n_particles: int = 13, twins: bool = False, coarse: bool = False):
    """Noisy helices of 8..11 hits at arc lengths 30..180 mm (layer = hit rank, or rank // 2 when ``coarse``:
    fragments then share a layer), each cut into 1..3 fragments, + junk hits and junk tracks; shuffled.
    ``twins``: every third particle copies the one before with a curvature 10% larger."""
    rng = np.random.default_rng(seed)
    xs, ys, zs, lays, pids, frag = [], [], [], [], [], []
    last: list[float] = []
    for p in range(n_particles):
        n = int(rng.integers(8, 12))
        radius = rng.uniform(91, 150) if rng.random() < 0.2 else rng.uniform(250, 20000)
        pars = [rng.uniform(-np.pi, np.pi), rng.choice([-1, 1]) / radius, rng.uniform(-50, 50), rng.uniform(-3, 3)]
        if twins and p % 3 == 2:
            pars = [last[0], last[1] * 1.1, last[2], last[3]]
        last = pars
        x, y, z = arc(*pars, np.sort(rng.uniform(30.0, 180.0, n)))
        x, y, z = x + rng.normal(0, 0.03, n), y + rng.normal(0, 0.03, n), z + rng.normal(0, 0.1, n)
        cuts = np.sort(rng.choice(np.arange(3, n - 2), int(rng.integers(0, 3)), replace=False))
        if len(cuts) == 2 and cuts[1] - cuts[0] < 3:
            cuts = cuts[:1]
        rank = np.arange(n)
        xs.append(x), ys.append(y), zs.append(z), lays.append(rank // 2 if coarse else rank), pids.append(np.full(n, p))
        frag.append(np.searchsorted(cuts, rank, "right") + 3 * p)
    m = 19  # junk: 7 single hits and 3 tracks of 4
    rr, ph = rng.uniform(30, 180, m), rng.uniform(-np.pi, np.pi, m)
    xs.append(rr * np.cos(ph)), ys.append(rr * np.sin(ph)), zs.append(rng.uniform(-300, 300, m))
    junk = 1000 + np.r_[np.arange(7), np.repeat([7, 8, 9], 4)]
    lays.append(np.arange(m) % 6), pids.append(np.full(m, -1)), frag.append(junk)
    perm = rng.permutation(sum(len(a) for a in xs))
    return tuple(np.concatenate(a)[perm] for a in (xs, ys, zs, lays, pids, frag))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("kw", [{}, {"rounds": 2, "max_chi2": 36.0, "sigma_t": 0.3, "sigma_z": 2.0},
                                {"max_chi2": 1e4, "sigma_t": 1.0, "sigma_z": 5.0}, {"min_hits": 4, "rounds": 3},
                                {"max_chi2": 1e4, "sigma_t": 1.0, "sigma_z": 5.0, "max_t": 0.08, "max_z": 0.3},
                                {"max_chi2": 1e4, "sigma_t": 1.0, "sigma_z": 5.0, "max_t": 0.1, "always_fit": True}])
@pytest.mark.parametrize("layers", ["fine", "coarse", None])
def test_merge_groups_matches_reference(seed: int, kw: dict, layers: str | None) -> None:
    x, y, z, layer, _, frag = fragments(seed, twins=True, coarse=layers == "coarse")
    frag = frag + (np.random.default_rng(seed).random(len(frag)) < 0.15) * 5000  # some hits knocked off
    uniq, group = np.unique(frag, return_inverse=True)
    active = np.random.default_rng(seed + 1).random(len(x)) < 0.9
    lay = None if layers is None else layer
    opts = {"min_hits": 3, "rounds": 1, "max_chi2": 16.0, "sigma_t": 0.1, "sigma_z": 0.5, **CUTS, **kw}
    got = merge_groups(x, y, z, group, active, len(uniq), layer=lay, **opts)
    np.testing.assert_array_equal(got, reference_merge(x, y, z, group, active, lay, **opts))


@pytest.mark.parametrize("seed", range(4))
def test_parameters_match_reference(seed: int) -> None:
    x, y, z, _, _, frag = fragments(seed + 10)
    uniq, group = np.unique(frag, return_inverse=True)
    params, cov, determined = helix_parameters(x, y, z, group, np.ones(len(x), bool), len(uniq), 0.2, 1.0)
    for g in range(len(uniq)):
        m = group == g
        if m.sum() >= 3:
            ref_p, ref_c, ref_d = reference_parameters(x[m], y[m], z[m], 0.2, 1.0)
            assert determined[g] == ref_d
            np.testing.assert_allclose(params[g], ref_p, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(cov[g], ref_c, rtol=1e-5, atol=1e-14)


def test_known_parameters_of_an_exact_helix() -> None:
    """κ > 0 turning counter-clockwise, φ0 the direction at the origin, z0, cotθ (the generator's own)."""
    rng = np.random.default_rng(1)
    for charge in (1, -1):
        phi0 = rng.uniform(-np.pi, np.pi)
        s = np.linspace(30.0, 180.0, 7)
        radius = 600.0
        x = -charge * radius * np.sin(phi0) + charge * radius * np.sin(phi0 + charge * s / radius)
        y = charge * radius * np.cos(phi0) - charge * radius * np.cos(phi0 + charge * s / radius)
        z = 12.0 + 0.7 * s
        params, _, determined = helix_parameters(x, y, z, np.zeros(7, np.int64), np.ones(7, bool), 1, 0.1, 0.5)
        assert determined[0]
        np.testing.assert_allclose(params[0], [phi0, charge / radius, 12.0, 0.7], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_candidate_window_finds_every_pair_within_the_cut(seed: int) -> None:
    """Prime numbers of tracks, φ0 near ±π (wrap-around), errors from tiny to the whole circle."""
    rng = np.random.default_rng(seed)
    n = [2, 3, 5, 97, 211][seed]
    phi0 = rng.uniform(-np.pi, np.pi, n)
    edge = rng.random(n)  # a third of the tracks within 0.05 rad of ±π
    phi0 = np.where(edge < 0.15, np.pi - rng.uniform(0, 0.05, n), np.where(edge < 0.3, rng.uniform(0, 0.05, n) - np.pi,
                                                                           phi0))
    sigma = 10.0 ** rng.uniform(-4, 0.5, n)
    eligible = rng.random(n) < 0.9
    a, b = candidate_pairs(phi0, sigma, eligible, 9.0)
    got = set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True))
    assert len(got) == len(a) and not (a == b).any() and eligible[a].all() and eligible[b].all()
    for i in range(n):
        for j in range(i + 1, n):
            dphi = abs((phi0[i] - phi0[j] + np.pi) % (2 * np.pi) - np.pi)
            if eligible[i] and eligible[j] and dphi * dphi / (sigma[i] ** 2 + sigma[j] ** 2) <= 9.0:
                assert (i, j) in got


def test_shared_layers_counts_common_layers() -> None:
    group = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    layer = np.array([1, 2, 3, 3, 4, 1, 7, 8, 9])
    active = np.array([True, True, True, True, True, False, True, True, True])
    got = shared_layers(group, layer, active, np.array([0, 0, 1, 2]), np.array([1, 2, 2, 0]))
    np.testing.assert_array_equal(got, [1, 0, 0, 0])


@pytest.mark.parametrize("seed", range(4))
def test_split_fragments_merge_back_and_neighbours_stay_apart(seed: int) -> None:
    x, y, z, layer, pid, frag = fragments(seed + 40)
    got = clean_tracks(x, y, z, frag, merge=2, layer=layer, max_transverse_mm=1.0, max_z_mm=2.0)
    for p in range(13):  # every particle is one track again, and no track holds two particles
        assert len(np.unique(got[pid == p])) == 1
    real = pid >= 0
    assert len(np.unique(got[real])) == 13
    without = clean_tracks(x, y, z, frag, merge=0, layer=layer)
    assert len(np.unique(without[real])) > 13 or len(np.unique(frag[real])) == 13  # merging did something


def two_helices(radius_b: float):
    """Two exact helices with φ0 = 0, z0 = 0, cotθ = 0.5, radii 600 and ``radius_b`` mm, 8 hits each on layers
    0..7, as four tracks: their inner and outer halves (ids 0, 1 and 2, 3)."""
    s = np.linspace(30.0, 180.0, 8)
    xs, ys, zs = [], [], []
    for radius in (600.0, radius_b):
        xs.append(radius * np.sin(s / radius)), ys.append(radius - radius * np.cos(s / radius)), zs.append(0.5 * s)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(zs), np.repeat([0, 1, 2, 3], 4), np.tile(s, 2)


@pytest.mark.parametrize(("radius_b", "kw"), [(500.0, {"sigma_transverse_mm": 0.1, "merge_chi2": 16.0}),
                                              (300.0, {"merge_fit": True}), (250.0, {})])
def test_two_close_helices_do_not_merge(radius_b: float, kw: dict) -> None:
    """The halves merge back into the two helices, not across; the inner half of one and the outer half of the
    other alone (no layer in common) stay two tracks: 5 mm apart at r = 180 mm (radius 500) by the χ² of
    precise hits; 27 mm apart (radius 300) by the joint fit (``merge_fit``); with the defaults' loose errors
    (χ² 34 < 36 at radius 300: those would merge) 38 mm apart (radius 250) by the χ²."""
    x, y, z, frag, layer = two_helices(radius_b)
    np.testing.assert_array_equal(clean_tracks(x, y, z, frag, layer=layer, **kw), np.repeat([0, 2], 8))
    cross = np.r_[0:4, 12:16]
    got = clean_tracks(x[cross], y[cross], z[cross], frag[cross], layer=layer[cross], **kw)
    np.testing.assert_array_equal(got, frag[cross])
    both = np.repeat([0, 1], 8)  # the two whole helices, on the same layers: the joint fit says no
    np.testing.assert_array_equal(clean_tracks(x, y, z, both, layer=layer, **{**kw, "merge_chi2": 1e6}), both)


def test_one_radius_tracks_are_dissolved() -> None:
    """4 hits 1 mm apart on the barrel layer at r = 116 mm fit a circle through the origin, but no particle
    leaves them: dissolved into singletons by default, kept with drop_one_radius=False; real helices stay."""
    phi = 0.3 + np.arange(4) / 116.0
    x, y, z, frag, layer = two_helices(300.0)
    x, y = np.r_[x, 116 * np.cos(phi)], np.r_[y, 116 * np.sin(phi)]
    z, frag, layer = np.r_[z, 40.0, 40.5, 41.0, 41.5], np.r_[frag, 9, 9, 9, 9], np.r_[layer, 4, 4, 4, 4]
    got = clean_tracks(x, y, z, frag, layer=layer)
    np.testing.assert_array_equal(got[:16], np.repeat([0, 2], 8))
    assert len(np.unique(got[16:])) == 4 and got[16:].min() > 9
    np.testing.assert_array_equal(clean_tracks(x, y, z, frag, layer=layer, drop_one_radius=False)[16:], 9)


def test_edges_empty_singletons_and_all_junk() -> None:
    empty = np.zeros(0)
    assert clean_tracks(empty, empty, empty, np.zeros(0, np.int64), merge=2).shape == (0,)
    got = merge_groups(empty, empty, empty, np.zeros(0, np.int64), np.zeros(0, bool), 0, layer=None,
                       min_hits=3, rounds=2, max_chi2=16, sigma_t=0.1, sigma_z=0.5, **CUTS)
    assert got.shape == (0,)
    ids = np.arange(5)  # singletons only: nothing to merge
    np.testing.assert_array_equal(clean_tracks(np.ones(5), np.arange(5.0), np.ones(5), ids, merge=2), ids)
    x, y, z, layer, _, frag = fragments(3, n_particles=1)
    got = clean_tracks(x, y, z, frag, merge=2, layer=layer)
    assert got.dtype == np.int64 and got.shape == frag.shape


@pytest.mark.parametrize("seed", range(3))
def test_shuffled_rows_give_the_same_tracks(seed: int) -> None:
    """Split (> 32 seed pairs per track), removal and merging: the same partition whatever the row order."""
    x, y, z, layer, _, frag = fragments(seed + 60, n_particles=11)
    frag = frag // 6  # pairs of particles in one track: the split has work to do, > 8 hits = > 28 pairs
    rng = np.random.default_rng(seed)
    x, y = x + rng.normal(0, 0.3, len(x)), y + rng.normal(0, 0.3, len(x))  # seeds of one particle disagree
    kw = {"merge": 2, "split": 3, "max_transverse_mm": 0.5}
    got = clean_tracks(x, y, z, frag, layer=layer, **kw)
    perm = rng.permutation(len(x))
    other = np.empty_like(got)
    other[perm] = clean_tracks(x[perm], y[perm], z[perm], frag[perm], layer=layer[perm], **kw)
    pairs = np.unique(np.stack([got, other]), axis=1)  # the same partition: a bijection between labels
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def test_clean_submission_takes_layers_from_the_hits_table() -> None:
    """volume_id, layer_id of the hits table (any row order) become the layer key of the merging: the inner half
    of one helix and the outer half of another (no layer in common) merge on χ² alone with the layers, while
    without them the joint fit keeps them apart."""
    x, y, z, frag, _ = two_helices(300.0)
    keep = np.r_[0:4, 12:16]
    x, y, z, frag, rank = x[keep], y[keep], z[keep], frag[keep], np.arange(8)
    hits = pd.DataFrame({"hit_id": np.arange(8) * 3 + 2, "x": x, "y": y, "z": z, "volume_id": 7 + rank // 4,
                         "layer_id": rank % 4 * 2})
    order = np.random.default_rng(1).permutation(8)
    sub = pd.DataFrame({"hit_id": hits["hit_id"].to_numpy()[order], "track_id": frag[order]})
    got = clean_submission(hits.sample(frac=1.0, random_state=2), sub, merge_chi2=1e6)["track_id"].to_numpy()
    np.testing.assert_array_equal(got, 0)
    key = (7 + rank // 4) * 10_000 + rank % 4 * 2
    np.testing.assert_array_equal(got, clean_tracks(x[order], y[order], z[order], frag[order], layer=key[order],
                                                    merge_chi2=1e6))
    np.testing.assert_array_equal(clean_tracks(x, y, z, frag, merge_chi2=1e6), frag)
