"""track_features: vectorised over tracks vs one track at a time, and the physics of an exact helix."""
from __future__ import annotations

import numpy as np
import pytest

from trackformers.clustering.cleaning import fit_tracks
from trackformers.clustering.merging import helix_parameters
from trackformers.clustering.track_features import FEATURES, segment_extreme, track_features

COL = {name: i for i, name in enumerate(FEATURES)}


def helix(pt: float, z0: float, cot: float, phi0: float, radii: np.ndarray, charge: int = 1,
          field_t: float = 2.0) -> np.ndarray:
    """Points (len(radii), 3) mm of a helix from (0, 0, z0) with transverse momentum pt GeV in field_t T."""
    big_r = pt / (0.3 * field_t) * 1000.0  # mm
    alpha = 2.0 * np.arcsin(radii / (2.0 * big_r))  # turning angle at transverse distance r from the origin
    turn = phi0 + charge * alpha
    cx, cy = -charge * big_r * np.sin(phi0), charge * big_r * np.cos(phi0)
    x, y = cx + charge * big_r * np.sin(turn), cy - charge * big_r * np.cos(turn)
    return np.stack([x, y, z0 + cot * big_r * alpha], 1)


def reference(x, y, z, layer, track_id, min_hits=3, field_t=2.0):
    """One track at a time: the same fits on each track's hits alone, plain Python for the rest."""
    ids, rows = [], []
    for t in np.unique(track_id):
        m = track_id == t
        if m.sum() < min_hits:
            continue
        g = np.zeros(int(m.sum()), np.int64)
        act = np.ones_like(g, dtype=bool)
        res_t, res_z = fit_tracks(x[m], y[m], z[m], g, act, 1)
        par, _, det = helix_parameters(x[m], y[m], z[m], g, act, 1, 1.0, 1.0)
        r = np.hypot(x[m], y[m])
        n, nl = int(m.sum()), len(set(layer[m].tolist()))
        rows.append([n, nl, n - nl, np.log1p(np.sqrt(np.mean(res_t ** 2))), np.log1p(np.sqrt(np.mean(res_z ** 2))),
                     np.log1p(res_t.max()), np.log1p(res_z.max()), abs(par[0, 1]) * 1000 / (0.3 * field_t),
                     abs(par[0, 2]), abs(par[0, 3]), r.min(), r.max(), float(det[0])])
        ids.append(t)
    return np.array(ids, np.int64), np.array(rows, np.float32).reshape(-1, len(FEATURES))


@pytest.mark.parametrize("n_hits", [0, 2, 3, 97, 1009])
def test_vectorised_equals_per_track(n_hits: int) -> None:
    rng = np.random.default_rng(n_hits)
    x, y = rng.normal(0, 300, (2, n_hits))
    z = rng.normal(0, 500, n_hits)
    layer = rng.integers(0, 7, n_hits)
    track_id = rng.integers(-3, max(n_hits // 4, 1), n_hits) * 7  # any ids: negative, gaps, shuffled
    ids, got = track_features(x, y, z, layer, track_id)
    want_ids, want = reference(x, y, z, layer, track_id)
    np.testing.assert_array_equal(ids, want_ids)
    assert got.shape == (len(want_ids), len(FEATURES)) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)


def test_exact_helix_gives_its_parameters() -> None:
    radii = np.array([32.0, 72.0, 116.0, 172.0, 260.0, 360.0])
    for pt, z0, cot, phi0, q in [(1.0, 12.0, 0.3, 0.4, 1), (5.0, -40.0, -1.2, 3.0, -1), (0.5, 0.0, 2.0, -2.0, 1)]:
        pts = helix(pt, z0, cot, phi0, radii, q)
        ids, f = track_features(pts[:, 0], pts[:, 1], pts[:, 2], np.arange(6), np.zeros(6, np.int64))
        row = f[0]
        assert row[COL["n_hits"]] == 6 and row[COL["n_layers"]] == 6 and row[COL["shared_layers"]] == 0
        np.testing.assert_allclose(row[COL["inv_pt"]], 1.0 / pt, rtol=1e-3)
        np.testing.assert_allclose(row[COL["abs_z0"]], abs(z0), atol=1e-3)
        np.testing.assert_allclose(row[COL["abs_cot_theta"]], abs(cot), rtol=1e-3)
        assert row[COL["log_max_t"]] < 1e-4 and row[COL["log_max_z"]] < 1e-4
        np.testing.assert_allclose([row[COL["r_min"]], row[COL["r_max"]]], [32.0, 360.0], rtol=1e-5)
        assert row[COL["determined"]] == 1.0


def test_mixed_track_has_large_residuals_and_shared_layers() -> None:
    radii = np.array([32.0, 72.0, 116.0, 172.0])
    a, b = helix(1.0, 0.0, 0.2, 0.1, radii), helix(2.0, 30.0, -0.5, 1.5, radii)
    pts = np.concatenate([a, b])
    _, f = track_features(pts[:, 0], pts[:, 1], pts[:, 2], np.r_[np.arange(4), np.arange(4)], np.zeros(8, int))
    assert f[0, COL["shared_layers"]] == 4 and f[0, COL["log_max_t"]] > 1.0


def test_segment_extreme_empty_groups() -> None:
    got = segment_extreme(np.array([3.0, -1.0, 5.0]), np.array([2, 0, 2]), 4, True)
    np.testing.assert_array_equal(got, [-1.0, 0.0, 5.0, 0.0])
    got = segment_extreme(np.array([3.0, -1.0, 5.0]), np.array([2, 0, 2]), 4, False)
    np.testing.assert_array_equal(got, [-1.0, 0.0, 3.0, 0.0])
