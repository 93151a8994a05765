"""Helix crossings: the closed-form cylinder crossing against a brute-force scan, and surface checks."""

from __future__ import annotations

import numpy as np

from trackformers.simulation import propagation
from trackformers.simulation.geometry import LAYERS


def _helix_xy(x, y, ux, uy, nx, ny, radius, t):
    return (x + radius * np.sin(t) * ux + radius * (1 - np.cos(t)) * nx,
            y + radius * np.sin(t) * uy + radius * (1 - np.cos(t)) * ny)


def _reference_turn(x, y, ux, uy, nx, ny, radius, r_cyl, n_scan=20_001):
    """First t in (0, 2π) where the helix radius crosses r_cyl: scan, then bisect (one particle)."""
    ts = np.linspace(0, 2 * np.pi, n_scan)[1:]
    px, py = _helix_xy(x, y, ux, uy, nx, ny, radius, ts)
    f = np.hypot(px, py) - r_cyl
    f0 = np.hypot(x, y) - r_cyl
    sign_change = np.flatnonzero(np.sign(f) != np.sign(np.r_[f0, f[:-1]]))
    if sign_change.size == 0:
        return np.inf
    j = sign_change[0]
    lo, hi = (ts[j - 1] if j else 0.0), ts[j]
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        fm = np.hypot(*_helix_xy(x, y, ux, uy, nx, ny, radius, mid)) - r_cyl
        flo = np.hypot(*_helix_xy(x, y, ux, uy, nx, ny, radius, lo)) - r_cyl
        lo, hi = (mid, hi) if np.sign(fm) == np.sign(flo) else (lo, mid)
    return 0.5 * (lo + hi)


def test_cylinder_turn_matches_brute_force():
    rng = np.random.default_rng(7)
    n = 97  # prime
    r0 = rng.uniform(0, 60, n)
    a0 = rng.uniform(-np.pi, np.pi, n)
    x, y = r0 * np.cos(a0), r0 * np.sin(a0)
    phi = rng.uniform(-np.pi, np.pi, n)
    ux, uy = np.cos(phi), np.sin(phi)
    h = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    nx, ny = -h * uy, h * ux
    radius = np.exp(rng.uniform(np.log(5.0), np.log(3000.0), n))
    r_cyl = r0 + rng.uniform(1, 400, n)
    got = propagation.cylinder_turn(x, y, ux, uy, nx, ny, radius, r_cyl)
    args = (x, y, ux, uy, nx, ny, radius, r_cyl)
    want = np.array([_reference_turn(*(a[i] for a in args)) for i in range(n)])
    assert np.array_equal(np.isinf(got), np.isinf(want))
    assert np.isinf(got).sum() > 3 and np.isfinite(got).sum() > 50  # both cases exercised
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-7, atol=1e-9)
    px, py = _helix_xy(x[ok], y[ok], ux[ok], uy[ok], nx[ok], ny[ok], radius[ok], got[ok])
    np.testing.assert_allclose(np.hypot(px, py), r_cyl[ok], rtol=1e-10)


def test_straight_tracks_stay_exact():
    # R of ~170 km (100 TeV): cancellation-free formulas must still land on the cylinder
    x = np.array([0.01, -0.02])
    y = np.array([0.0, 0.015])
    ux, uy = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    nx, ny = -uy, ux
    radius = np.array([1.7e8, 1.7e8])
    t = propagation.cylinder_turn(x, y, ux, uy, nx, ny, radius, np.array([1020.0, 32.0]))
    px, py = _helix_xy(x, y, ux, uy, nx, ny, radius, t)
    np.testing.assert_allclose(np.hypot(px, py), [1020.0, 32.0], rtol=0, atol=1e-7)


def _gun_state(n, rng, pt=(0.5, 20.0), eta=3.0):
    pt = rng.uniform(*pt, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    e = rng.uniform(-eta, eta, n)
    return {"x": rng.normal(0, 0.01, n), "y": rng.normal(0, 0.01, n), "z": rng.normal(0, 50, n),
            "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(e),
            "q": np.where(rng.random(n) < 0.5, -1.0, 1.0), "mass": np.full(n, 0.13957)}


def test_crossings_lie_on_surfaces_in_order():
    rng = np.random.default_rng(11)
    state = _gun_state(211, rng)
    cross = propagation.propagate(state, propagation.build(LAYERS), rng)
    lay = cross["layer"]
    pos = np.array([lv.position for lv in LAYERS])[lay]
    lo, hi = np.array([lv.lo for lv in LAYERS])[lay], np.array([lv.hi for lv in LAYERS])[lay]
    disk = np.array([lv.kind == "disk" for lv in LAYERS])[lay]
    r = np.hypot(cross["x"], cross["y"])
    np.testing.assert_allclose(r[~disk], pos[~disk], rtol=1e-12)
    assert np.all(cross["z"][disk] == pos[disk])
    v = np.where(disk, r, cross["z"])
    assert np.all((v >= lo) & (v <= hi))
    # each particle's crossings move away from its vertex, and the momentum magnitude is conserved
    d = np.hypot(r, cross["z"] - state["z"][cross["particle"]])
    order = np.lexsort((np.arange(len(d)), cross["particle"]))
    same = cross["particle"][order][1:] == cross["particle"][order][:-1]
    assert np.all(np.diff(d[order])[same] > 0)
    p0 = np.sqrt(state["px"] ** 2 + state["py"] ** 2 + state["pz"] ** 2)[cross["particle"]]
    np.testing.assert_allclose(np.sqrt(cross["px"] ** 2 + cross["py"] ** 2 + cross["pz"] ** 2), p0, rtol=1e-9)
    # central tracks of high pT cross all 10 barrel layers
    assert np.bincount(cross["particle"], minlength=211).max() >= 10


def test_empty_and_neutral():
    rng = np.random.default_rng(0)
    empty = {k: np.zeros(0) for k in ("x", "y", "z", "px", "py", "pz", "q", "mass")}
    out = propagation.propagate(empty, propagation.build(LAYERS), rng)
    assert all(len(v) == 0 for v in out.values())
    neutral = _gun_state(5, rng)
    neutral["q"] = np.zeros(5)
    assert len(propagation.propagate(neutral, propagation.build(LAYERS), rng)["layer"]) == 0
