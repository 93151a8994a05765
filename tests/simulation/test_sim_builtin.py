"""The built-in engine: event content, TrackML-like hit counts, surfaces, helix radius, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trackformers.errors import InputError
from trackformers.simulation import event_seed, simulate, simulate_event
from trackformers.simulation.generator import decode_particle_id
from trackformers.simulation.geometry import LAYERS
from trackformers.simulation.propagation import C_LIGHT

B = 2.0


@pytest.fixture(scope="module")
def mu20():
    return [simulate_event(seed=s, pileup=20) for s in range(3)]


def _layer_columns(hits: pd.DataFrame) -> dict[str, np.ndarray]:
    table = pd.DataFrame([(lay.volume_id, lay.layer_id, lay.kind == "disk", lay.position, lay.lo, lay.hi,
                           lay.sigma_u, lay.sigma_v) for lay in LAYERS],
                         columns=["volume_id", "layer_id", "disk", "pos", "lo", "hi", "su", "sv"])
    m = hits[["volume_id", "layer_id"]].merge(table, how="left", on=["volume_id", "layer_id"])
    assert not m["pos"].isna().any()
    return {c: m[c].to_numpy() for c in m.columns}


def test_event_tables(mu20):
    ev = mu20[0]
    assert ev.hits["hit_id"].tolist() == list(range(1, len(ev.hits) + 1))
    assert ev.truth["hit_id"].tolist() == ev.hits["hit_id"].tolist()
    for col in ("x", "y", "z"):
        assert ev.hits[col].dtype == np.float32
    assert ev.truth["particle_id"].dtype == np.int64 and ev.particles["particle_id"].dtype == np.int64
    counts = ev.truth["particle_id"].value_counts()
    nh = ev.particles.set_index("particle_id")["nhits"]
    assert (nh.reindex(counts.index).to_numpy() == counts.to_numpy()).all()
    assert nh.sum() == len(ev.hits)  # no noise by default
    np.testing.assert_allclose(ev.truth["weight"].sum(), 1.0, rtol=1e-5)
    assert set(ev.hits["volume_id"]) == {7, 8, 9, 12, 13, 14, 16, 17, 18}
    assert (ev.hits["module_id"] >= 1).all()


def test_hits_are_shuffled(mu20):
    pid = mu20[0].truth["particle_id"].to_numpy()
    assert np.mean(pid[1:] == pid[:-1]) < 0.01
    # and not sorted by layer or radius either
    r = np.hypot(mu20[0].hits["x"], mu20[0].hits["y"]).to_numpy()
    assert abs(np.corrcoef(np.arange(len(r)), r)[0, 1]) < 0.05


def test_particle_ids_trackml_layout(mu20):
    p = mu20[1].particles
    f = decode_particle_id(p["particle_id"].to_numpy())
    assert (p["particle_id"] > 0).all()
    assert f["vertex_id"].min() == 1 and (f["primary_id"] >= 1).all()
    assert (f["generation"] == 0).all() and (f["process"] == 0).all()
    # one vertex position per vertex id
    assert (p.groupby(f["vertex_id"])["vz"].nunique() == 1).all()
    assert set(np.abs(p["particle_type"])) <= {211, 321, 2212} and set(p["q"]) == {-1, 1}


def test_trackml_like_counts(mu20):
    n_hits = np.mean([len(e.hits) for e in mu20])
    n_particles = np.mean([len(e.particles) for e in mu20])
    pixel = np.mean([e.hits["volume_id"].isin([7, 8, 9]).sum() for e in mu20])
    # scale by the interactions actually drawn (1 + Poisson(20)) to the mean 201 of μ = 200
    vertices = np.mean([decode_particle_id(e.particles["particle_id"])["vertex_id"].max() for e in mu20])
    scale = 201 / vertices
    assert 10.5 < n_hits / n_particles < 13.0
    assert 85_000 < n_hits * scale < 120_000
    assert 50_000 < pixel * scale < 65_000


def test_hits_on_their_surfaces(mu20):
    ev = simulate_event(seed=5, pileup=5, noise=0.2)
    h, t = ev.hits, ev.truth
    L = _layer_columns(h)
    disk = L["disk"].astype(bool)
    tr = np.hypot(t["tx"], t["ty"]).to_numpy()
    tz = t["tz"].to_numpy()
    # true positions exactly on the surface (float32 rounding)
    np.testing.assert_allclose(tr[~disk], L["pos"][~disk], rtol=1e-6)
    assert np.all(tz[disk] == L["pos"][disk])
    v = np.where(disk, tr, tz)
    assert np.all((v >= L["lo"] - 1e-3) & (v <= L["hi"] + 1e-3))
    # measured positions: on the surface, within 6 σ of the truth in rφ and in z (barrel) / r (disk)
    r = np.hypot(h["x"], h["y"]).to_numpy()
    np.testing.assert_allclose(r[~disk], L["pos"][~disk], rtol=1e-6)
    np.testing.assert_allclose(h["z"].to_numpy()[disk], L["pos"][disk], rtol=0, atol=1e-3)
    signal = t["particle_id"].to_numpy() != 0
    dphi = np.angle(np.exp(1j * (np.arctan2(h["y"], h["x"]) - np.arctan2(t["ty"], t["tx"])).to_numpy()))
    du = dphi * tr / L["su"]
    dv = np.where(disk, r - tr, h["z"].to_numpy() - tz) / L["sv"]
    assert np.abs(du[signal]).max() < 6 and np.abs(dv[signal]).max() < 6
    assert 0.8 < np.std(du[signal]) < 1.2 and 0.8 < np.std(dv[signal]) < 1.2
    # noise: particle 0, weight 0, about the requested fraction
    noise = ~signal
    assert 0.15 < noise.sum() / signal.sum() < 0.25
    assert (t["weight"][noise] == 0).all()


def _circle_radius(x: np.ndarray, y: np.ndarray) -> float:
    """Algebraic circle fit (x² + y² + D x + E y + F = 0) in centred coordinates, float64."""
    x, y = x - x.mean(), y - y.mean()
    A = np.column_stack([x, y, np.ones_like(x)])
    (d, e, f), *_ = np.linalg.lstsq(A, -(x * x + y * y), rcond=None)
    return float(np.sqrt(d * d / 4 + e * e / 4 - f))


def _radius_ratios(ev) -> np.ndarray:
    """Fitted circle radius of each particle's true hits / (pT / (0.3 B)), particles with >= 5 hits."""
    t = ev.truth.merge(ev.particles, on="particle_id")
    ratios = []
    for _, g in t.groupby("particle_id"):
        if len(g) < 5:
            continue
        radius = _circle_radius(g["tx"].to_numpy(np.float64), g["ty"].to_numpy(np.float64))
        pt_p = np.hypot(g["px"].iloc[0], g["py"].iloc[0])
        ratios.append(radius / (pt_p / (C_LIGHT * B)))
    return np.array(ratios, dtype=np.float64)


def test_helix_radius_matches_pt_without_scattering():
    ratios = _radius_ratios(simulate_event(seed=2, gun=60, gun_pt=(0.5, 10.0), eta_max=1.0, scattering=False))
    assert len(ratios) > 40
    assert np.max(np.abs(ratios - 1)) < 0.01


def test_helix_radius_with_scattering_at_high_pt():
    # Multiple scattering sets a pT-independent floor (~1%) on the curvature: each track's circle
    # is then within a few %, the typical one within 1%, and the radius is unbiased.
    ratios = _radius_ratios(simulate_event(seed=2, gun=60, gun_pt=(30.0, 100.0), eta_max=1.0))
    assert len(ratios) > 40
    assert np.median(np.abs(ratios - 1)) < 0.01
    assert abs(np.mean(ratios) - 1) < 0.005
    assert np.max(np.abs(ratios - 1)) < 0.05


def test_scattering_bends_low_pt_tracks():
    # with scattering a 0.5-1 GeV track is no longer one circle: the fit deviates by more than the 1% above
    ev = simulate_event(seed=4, gun=60, gun_pt=(0.5, 1.0), eta_max=1.0, scattering=True, efficiency=1.0)
    t = ev.truth.merge(ev.particles, on="particle_id")
    dev = []
    for _, g in t.groupby("particle_id"):
        radius = _circle_radius(g["tx"].to_numpy(np.float64), g["ty"].to_numpy(np.float64))
        dev.append(abs(radius / (np.hypot(g["px"].iloc[0], g["py"].iloc[0]) / (C_LIGHT * B)) - 1))
    assert np.max(dev) > 0.01


def test_deterministic_by_seed():
    a = simulate_event(seed=123, pileup=3, volumes=(7, 8, 9))
    b = simulate_event(seed=123, pileup=3, volumes=(7, 8, 9))
    c = simulate_event(seed=124, pileup=3, volumes=(7, 8, 9))
    for name in ("hits", "truth", "particles"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert len(a.hits) != len(c.hits) or not np.array_equal(a.hits["x"], c.hits["x"])


def test_simulate_streams():
    evs = list(simulate(3, seed=9, pileup=1, volumes="7,8,9"))
    assert [e.event_id for e in evs] == [0, 1, 2]
    again = simulate_event(seed=event_seed(9, 2), pileup=1, volumes="7,8,9", event_id=2)
    pd.testing.assert_frame_equal(evs[2].hits, again.hits)
    assert not np.array_equal(evs[0].hits["x"].to_numpy()[:50], evs[1].hits["x"].to_numpy()[:50])
    assert all(set(e.hits["volume_id"]) <= {7, 8, 9} for e in evs)


def test_volume_selection_and_empty_pileup():
    ev = simulate_event(seed=1, volumes=[13])
    assert len(ev.hits) > 0 and set(ev.hits["volume_id"]) == {13}
    assert set(ev.particles["nhits"].unique()) >= {0} or ev.particles["nhits"].min() >= 0
    ev0 = simulate_event(seed=1)
    assert len(ev0.hits) > 0 and decode_particle_id(ev0.particles["particle_id"])["vertex_id"].max() == 1


@pytest.mark.parametrize("kwargs", [
    {"pileup": -1}, {"pileup": float("nan")}, {"volumes": [7, 10]}, {"engine": "geant"}, {"colour": 1},
    {"efficiency": 1.5}, {"eta_max": 5.0}, {"seed": -3}, {"beam_sigma_z": -1.0}, {"beam_sigma_z": float("nan")},
])
def test_bad_input(kwargs):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(InputError):
        simulate_event(**kwargs)


def test_beam_spot_length():
    """beam_sigma_z (mm) sets the spread of the interactions along the beam; the default is 55.5 mm, as before."""
    def vz_spread(**options) -> float:
        particles = simulate_event(seed=9, pileup=200, volumes=[8], **options).particles
        vz = particles["vz"].to_numpy()
        vertex = decode_particle_id(particles["particle_id"].to_numpy())["vertex_id"]
        per_vertex = pd.Series(vz).groupby(vertex).first()  # one z per interaction
        return float(per_vertex.std())

    assert 45 < vz_spread() < 66 and 45 < vz_spread(beam_sigma_z=55.5) < 66
    assert 130 < vz_spread(beam_sigma_z=150.0) < 170
    assert vz_spread(beam_sigma_z=0.0) == 0.0
    default = simulate_event(seed=9, pileup=5, volumes=[8])
    same = simulate_event(seed=9, pileup=5, volumes=[8], beam_sigma_z=55.5)
    pd.testing.assert_frame_equal(default.hits, same.hits)


def test_bad_simulate_arguments_fail_eagerly():
    with pytest.raises(InputError):
        simulate(0, seed=1)
    with pytest.raises(InputError):
        simulate(2, seed=1, volumes=[99])


def test_hit_efficiency():
    # the propagation (and its random numbers) come before the efficiency draw: same crossings, fewer hits
    full = simulate_event(seed=6, pileup=10, efficiency=1.0)
    half = simulate_event(seed=6, pileup=10, efficiency=0.5)
    assert abs(len(half.hits) / len(full.hits) - 0.5) < 0.03
    default = simulate_event(seed=6, pileup=10)
    assert abs(len(default.hits) / len(full.hits) - 0.98) < 0.01


def test_event_without_hits_is_valid():
    # one central particle and only the -z pixel endcap: no crossing at all, even with noise on
    ev = simulate_event(seed=0, gun=1, eta_max=0.1, volumes=[7], noise=0.5)
    assert len(ev.hits) == 0 and len(ev.truth) == 0 and ev.particles["nhits"].tolist() == [0]
    assert ev.hits["x"].dtype == np.float32 and ev.truth["particle_id"].dtype == np.int64
