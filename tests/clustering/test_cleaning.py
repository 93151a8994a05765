"""Track cleaning: vectorised vs a plain per-track reference, known answers on exact helices, edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trackformers.clustering import cleaning
from trackformers.clustering.cleaning import check_params, clean_submission, fit_tracks, seed_pairs
from trackformers.errors import InputError

#: the split and removal stages alone (merging and the one-radius rule: tests/clustering/test_merging.py)
ALONE = {"merge": 0, "drop_one_radius": False}


def clean_tracks(*args, **kw) -> np.ndarray:
    return cleaning.clean_tracks(*args, **{**ALONE, **kw})


def reference_fit(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One track: residuals (mm) of the r⁴-weighted orthogonal conformal fit (eigh) and the lstsq z line."""
    r2 = x * x + y * y
    safe = np.where(r2 > 0, r2, 1.0)
    p = np.stack([x / safe, y / safe], 1)
    w = r2 * r2
    mean = (w[:, None] * p).sum(0) / max(w.sum(), 1e-300)
    d = p - mean
    _, vecs = np.linalg.eigh((w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0))
    n = vecs[:, 0]
    rho0 = float(n @ mean)
    if rho0 < 0:
        n, rho0 = -n, -rho0
    if rho0 > 1e-9:  # a circle: plain |distance to centre − R|
        radius = 1.0 / (2.0 * rho0)
        res_t = np.abs(np.hypot(x - n[0] * radius, y - n[1] * radius) - radius)
        s = 2.0 * radius * np.arcsin(np.minimum(np.sqrt(r2) / (2.0 * radius), 1.0))
    else:  # (nearly) straight: the distance to the line through the origin
        res_t, s = np.abs(x * n[0] + y * n[1]), np.sqrt(r2)
    design = np.stack([np.ones_like(s), s], 1)
    if np.ptp(s) > 1e-6 * max(np.abs(s).max(), 1e-300):
        coef = np.linalg.lstsq(design, z, rcond=None)[0]
    else:
        coef = np.array([z.mean(), 0.0])
    return res_t, np.abs(z - design @ coef)


def reference_seed(x, y, z, members: list[int], max_t: float, max_z: float, candidates: int = 32) -> list[int]:
    """One track: the hits within the cuts of the best helix through the origin and a pair of its hits (the
    pairs' ranks count the hits sorted by r², then z, x, y), in index order."""
    a, b = seed_pairs(np.array([len(members)]), candidates)
    best: list[int] = []
    hits = sorted(members, key=lambda h: (max(x[h] * x[h] + y[h] * y[h], 1e-300), z[h], x[h], y[h]))
    for k in range(candidates):
        i, j = hits[a[0, k]], hits[b[0, k]]
        centre = np.linalg.solve(np.array([[x[i], y[i]], [x[j], y[j]]]),
                                 np.array([x[i] ** 2 + y[i] ** 2, x[j] ** 2 + y[j] ** 2]) / 2.0)
        radius = np.hypot(*centre)
        m = np.array(members)
        res_t = np.abs(np.hypot(x[m] - centre[0], y[m] - centre[1]) - radius)
        s = 2.0 * radius * np.arcsin(np.minimum(np.hypot(x[m], y[m]) / (2.0 * radius), 1.0))
        si, sj = s[members.index(i)], s[members.index(j)]
        slope = (z[j] - z[i]) / (sj - si) if abs(sj - si) > 1e-9 else 0.0
        inside = [h for h, rt, rz in zip(members, res_t, np.abs(z[m] - z[i] - slope * (s - si)), strict=True)
                  if rt <= max_t and rz <= max_z]
        if len(inside) > len(best):
            best = inside
    return sorted(best)


def reference_clean(x, y, z, track_id, *, max_transverse_mm=1.0, max_z_mm=2.0, min_hits=3, iterations=2,
                    reject=False, split=3) -> np.ndarray:
    """Python loops over tracks and rounds; split-off tracks numbered like the vectorised version (outliers
    of group g in a round of G groups form group g + G), then singletons in hit order."""
    ids = np.asarray(track_id, dtype=np.int64)
    uniq = np.unique(ids)
    groups = {g: list(np.flatnonzero(ids == t)) for g, t in enumerate(uniq) if (ids == t).sum() >= min_hits}
    n_groups = len(uniq)
    for _ in range(split):
        for g, members in list(groups.items()):
            inside = reference_seed(x, y, z, members, max_transverse_mm, max_z_mm) if len(members) >= 2 else []
            if len(inside) >= min_hits and len(inside) < len(members):
                groups[g], groups[g + n_groups] = inside, [h for h in members if h not in inside]
        n_groups *= 2
    kept = {}
    for g, members in groups.items():
        members = list(members)
        for step in range(iterations + (1 if reject else 0)):
            if len(members) < min_hits:
                break
            res_t, res_z = reference_fit(x[members], y[members], z[members])
            score = np.maximum(res_t / max_transverse_mm, res_z / max_z_mm)
            if score.max() <= 1.0:
                break
            members = [] if step == iterations else [h for i, h in enumerate(members) if i != np.argmax(score)]
        if len(members) >= min_hits:
            kept[g] = members
    out, top, single = ids.copy(), ids.max() + 1 if len(ids) else 0, np.zeros(len(ids), dtype=bool)
    for g in sorted(kept):
        if g >= len(uniq):
            out[kept[g]], top = top, top + 1
    single[sorted(set(h for m in groups.values() for h in m) - set(h for m in kept.values() for h in m))] = True
    out[single] = top + np.arange(int(single.sum()))
    return out


def helix(rng: np.random.Generator, radius: float, charge: int, n: int = 8):
    """Exact hits of a helix from the origin: radii 30..180 mm, z = z0 + cotθ·s (s the arc length)."""
    phi0 = rng.uniform(-np.pi, np.pi)
    s = np.sort(rng.uniform(30.0, 180.0, n))
    turn = charge * s / radius  # the angle the track turns by after arc length s
    cx, cy = -charge * radius * np.sin(phi0), charge * radius * np.cos(phi0)
    x = cx + charge * radius * np.sin(phi0 + turn)
    y = cy - charge * radius * np.cos(phi0 + turn)
    return x, y, rng.uniform(-50, 50) + rng.uniform(-3, 3) * s


def random_event(seed: int, n_tracks: int = 60):
    """Junk-ish tracks of random sizes 1..12 (some near-helices with noise), duplicate ids, shuffled."""
    rng = np.random.default_rng(seed)
    xs, ys, zs, ids = [], [], [], []
    for _ in range(n_tracks):
        m = int(rng.integers(1, 13))
        if rng.random() < 0.5:
            x, y, z = helix(rng, rng.uniform(200, 5000), int(rng.choice([-1, 1])), m)
            k = rng.normal(0, 2.0, (3, m)) * (rng.random(m) < 0.3)  # a few displaced hits
            x, y, z = x + k[0], y + k[1], z + 4 * k[2]
        else:
            rr, ph = rng.uniform(30, 1000, m), rng.uniform(-np.pi, np.pi, m)
            x, y, z = rr * np.cos(ph), rr * np.sin(ph), rng.uniform(-1000, 1000, m)
        xs.append(x), ys.append(y), zs.append(z)
        ids.append(np.full(m, int(rng.integers(0, n_tracks // 2)) * 7 - 50))  # duplicates, negatives
    perm = rng.permutation(sum(len(i) for i in ids))
    return tuple(np.concatenate(a)[perm] for a in (xs, ys, zs, ids))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kw", [{}, {"max_transverse_mm": 0.5, "max_z_mm": 2.0, "iterations": 3, "split": 0},
                                {"reject": True, "iterations": 1, "split": 0},
                                {"min_hits": 4, "iterations": 0, "reject": True},
                                {"split": 3, "max_transverse_mm": 1.0, "max_z_mm": 3.0},
                                {"split": 2, "iterations": 0, "reject": True}])
def test_matches_reference(seed: int, kw: dict) -> None:
    x, y, z, ids = random_event(seed)
    got = clean_tracks(x, y, z, ids, **kw)
    np.testing.assert_array_equal(got, reference_clean(x, y, z, ids, **kw))


@pytest.mark.parametrize("seed", range(4))
def test_fit_residuals_match_reference(seed: int) -> None:
    x, y, z, ids = random_event(seed + 20)
    uniq, group = np.unique(ids, return_inverse=True)
    active = np.random.default_rng(seed).random(len(ids)) < 0.8
    res_t, res_z = fit_tracks(x, y, z, group, active, len(uniq))
    for g in range(len(uniq)):
        idx = np.flatnonzero((group == g) & active)
        if len(idx) >= 3:
            np.testing.assert_allclose(np.stack([res_t[idx], res_z[idx]]),
                                       np.stack(reference_fit(x[idx], y[idx], z[idx])), rtol=1e-7, atol=1e-7)


def test_known_answer_helices_lose_exactly_the_injected_hits() -> None:
    rng = np.random.default_rng(7)
    xs, ys, zs, ids, injected = [], [], [], [], []
    for t, (radius, charge) in enumerate([(300, 1), (300, -1), (1500, 1), (8000, -1), (1e9, 1), (1e12, -1)]):
        x, y, z = helix(rng, radius, charge, 9)
        far = np.zeros(9, dtype=bool)
        far[rng.choice(9, 2 if t % 2 else 1, replace=False)] = True
        # transverse outliers on some tracks, z outliers on the others
        xs.append(x + far * 20.0 * (t % 3 == 0)), ys.append(y), zs.append(z + far * 40.0 * (t % 3 != 0))
        ids.append(np.full(9, 100 + t)), injected.append(far)
    x, y, z, ids, far = (np.concatenate(a) for a in (xs, ys, zs, ids, injected))
    got = clean_tracks(x, y, z, ids, max_transverse_mm=0.5, max_z_mm=2.0, iterations=2)
    np.testing.assert_array_equal(got[~far], ids[~far])  # every genuine hit stays on its track
    assert (got[far] > ids.max()).all() and len(np.unique(got[far])) == far.sum()
    clean = clean_tracks(x[~far], y[~far], z[~far], ids[~far], max_transverse_mm=1e-3, max_z_mm=1e-3, reject=True)
    np.testing.assert_array_equal(clean, ids[~far])  # exact helices (also straight ones) fit to < 1 µm


@pytest.mark.parametrize("seed", range(3))
def test_split_separates_merged_helices(seed: int) -> None:
    rng = np.random.default_rng(seed)
    (xa, ya, za), (xb, yb, zb) = helix(rng, 900, 1, 8), helix(rng, 2500, -1, 6)
    x, y, z = np.r_[xa, xb, 150.0], np.r_[ya, yb, -40.0], np.r_[za, zb, 300.0]  # + one junk hit
    perm = rng.permutation(15)
    got = clean_tracks(x[perm], y[perm], z[perm], np.full(15, 4), max_transverse_mm=0.5, max_z_mm=2.0,
                       split=1)[np.argsort(perm)]
    np.testing.assert_array_equal(got[:8], 4)  # the larger helix keeps the id
    assert len(set(got[8:14])) == 1 and got[8] not in (4, got[14])  # the other one gets a fresh id
    assert clean_tracks(x, y, z, np.full(15, 4), max_transverse_mm=0.5, max_z_mm=2.0, split=0).tolist() != got.tolist()


@pytest.mark.parametrize("kw", [{"iterations": 4, "split": 0}, {"iterations": 1, "reject": True}, {"iterations": 4}])
def test_junk_tracks_are_dissolved(kw: dict) -> None:
    rng = np.random.default_rng(3)  # 40 tracks of 6 hits spread over the detector
    rr, ph, z = rng.uniform(30, 1000, 240), rng.uniform(-np.pi, np.pi, 240), rng.uniform(-1000, 1000, 240)
    got = clean_tracks(rr * np.cos(ph), rr * np.sin(ph), z, np.repeat(np.arange(40), 6), **kw)
    assert len(np.unique(got)) == len(got)  # all singletons


@pytest.mark.filterwarnings("error")  # no 0/0 or overflow anywhere, also for degenerate tracks
def test_edges_empty_small_origin_and_one_id_per_hit() -> None:
    x, y, z = np.r_[0, 0, 0, 5, 5, 5, 1e-30, 0], np.r_[0, 0, 0, 5, 5, 5, 0, 0], np.r_[0, 1, 2, 3, 3, 3, 0, 0]
    for kw in ({}, {"split": 0, "reject": True}):  # all hits at r = 0; identical hits; tiny r
        ids = np.r_[1, 1, 1, 2, 2, 2, 3, 3]
        np.testing.assert_array_equal(clean_tracks(x, y, z, ids, **kw), ids)
    assert clean_tracks(*[np.zeros(0)] * 3, np.zeros(0, np.int64)).shape == (0,)
    ids = np.array([5, 5, 9])  # tracks below min_hits are untouched
    np.testing.assert_array_equal(clean_tracks(np.ones(3), np.ones(3), np.ones(3), ids), ids)
    x, y, z = np.array([0.0, 30, 60, 90, 0]), np.array([0.0, 1, 2, 3, 0]), np.array([0.0, 3, 6, 9, 0])
    got = clean_tracks(x, y, z, np.array([1, 1, 1, 1, 1]))  # hits at r = 0 lie on every circle
    np.testing.assert_array_equal(got, np.ones(5, np.int64))
    x, y, z, ids = random_event(11)
    got = clean_tracks(x, y, z, ids, reject=True)
    assert got.shape == ids.shape and got.dtype == np.int64 and np.isfinite(got).all()
    assert len(np.unique(got)) >= len(np.unique(ids))  # ids only split, never merge
    pairs = np.unique(np.stack([ids, got]), axis=1)
    assert len(np.unique(pairs[1])) == pairs.shape[1]  # each new id comes from one old track


def test_seed_pairs_cover_all_pairs_of_small_tracks() -> None:
    counts = np.arange(2, 40)
    a, b = seed_pairs(counts, 32)
    assert ((0 <= b) & (b < a) & (a < counts[:, None])).all()
    for n, ra, rb in zip(counts, a, b, strict=True):
        assert len(set(zip(ra, rb, strict=True))) == min(n * (n - 1) // 2, 32)


def test_check_params() -> None:
    assert check_params({"max_z_mm": 2, "reject": True}) == {"max_z_mm": 2, "reject": True}
    assert check_params({"merge": 3, "merge_chi2": 9.5, "drop_one_radius": False, "sigma_z_mm": 1})["merge"] == 3
    for bad in ({"eps": 1}, {"max_z_mm": -1}, {"min_hits": 2}, {"iterations": 1.5}, {"reject": 1}, {"split": True},
                {"max_transverse_mm": "x"}, {"merge": -1}, {"merge_chi2": 0}, {"drop_one_radius": 1},
                {"sigma_transverse_mm": -0.1}, {"merge": True}):
        with pytest.raises(InputError):
            check_params(bad)
    with pytest.raises(InputError, match=r"merge_chi2=0: expected a positive number\.$"):  # a χ², no unit
        check_params({"merge_chi2": 0})


def test_clean_submission_matches_positions_by_hit_id() -> None:
    """The DataFrame wrapper finds each submission row's x, y, z by hit id, whatever the two tables' orders."""
    x, y, z, ids = random_event(3)
    hits = pd.DataFrame({"hit_id": np.arange(len(x)) * 7 + 1, "x": x, "y": y, "z": z})
    order = np.random.default_rng(0).permutation(len(x))
    sub = pd.DataFrame({"hit_id": hits["hit_id"].to_numpy()[order], "track_id": ids[order]})
    got = clean_submission(hits.iloc[::-1], sub, **ALONE)
    assert got["hit_id"].tolist() == sub["hit_id"].tolist()
    # fresh ids are numbered in row order, so compare with clean_tracks in the submission's order
    np.testing.assert_array_equal(got["track_id"].to_numpy(), clean_tracks(x[order], y[order], z[order],
                                                                          ids[order]))
