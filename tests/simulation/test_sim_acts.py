"""The ACTS engine: id mappings and hits -> event conversion (pure); the engine itself only with pyacts."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest

from trackformers.errors import InputError
from trackformers.simulation import acts as acts_engine
from trackformers.simulation import acts_noise, simulate_event
from trackformers.simulation.builtin import Config, finish_event, layer_table
from trackformers.simulation.generator import decode_particle_id, generate
from trackformers.simulation.geometry import LAYERS, layers_of

try:
    HAVE_PYACTS = importlib.util.find_spec("acts") is not None
except (ImportError, ValueError):  # a blocked or half-installed acts counts as missing
    HAVE_PYACTS = False


def _geometry_id(volume, layer, sensitive, boundary=0, approach=0, extra=0):
    parts = [(volume, 56), (boundary, 48), (layer, 36), (approach, 28), (sensitive, 8), (extra, 0)]
    out = np.zeros(len(np.atleast_1d(volume)), dtype=np.uint64)
    for value, shift in parts:
        out |= np.asarray(value, dtype=np.uint64) << np.uint64(shift)
    return out


def test_split_geometry_id():
    rng = np.random.default_rng(0)
    n = 1009
    vol, lay, sen = rng.integers(0, 256, n), rng.integers(0, 4096, n), rng.integers(0, 1 << 20, n)
    other = (rng.integers(0, 256, n) for _ in range(3))
    gid = _geometry_id(vol, lay, sen, *other)
    for ids in (gid, gid.view(np.int64)):  # volumes >= 128 are negative as int64
        v, l_, s = acts_engine.split_geometry_id(ids)
        np.testing.assert_array_equal(v, vol)
        np.testing.assert_array_equal(l_, lay)
        np.testing.assert_array_equal(s, sen)
    # a TrackML-like id by hand: volume 8, layer 4, module 123
    v, l_, s = acts_engine.split_geometry_id(np.array([(8 << 56) | (4 << 36) | (123 << 8)], dtype=np.uint64))
    assert (v[0], l_[0], s[0]) == (8, 4, 123)


def test_barcode_round_trip_and_secondaries():
    parts = generate(np.random.default_rng(1), pileup=30)
    pid = parts["particle_id"]
    bc = acts_engine.trackml_to_barcode(pid)
    assert set(bc) == {name for name, _, _ in acts_engine.BARCODE_COLUMNS}
    np.testing.assert_array_equal(bc["particle_id_pv"], decode_particle_id(pid)["vertex_id"])
    np.testing.assert_array_equal(bc["particle_id_part"], decode_particle_id(pid)["primary_id"])
    assert not any(bc[k].any() for k in ("particle_id_sv", "particle_id_gen", "particle_id_subpart"))
    np.testing.assert_array_equal(acts_engine.barcode_to_trackml(pd.DataFrame(bc)), pid)
    # a Fatras secondary: vertex 3, vertex_secondary 2, particle 7, generation 1, sub-particle 5
    sec = pd.DataFrame({"particle_id_pv": [3], "particle_id_sv": [2], "particle_id_part": [7],
                        "particle_id_gen": [1], "particle_id_subpart": [5]})
    f = decode_particle_id(acts_engine.barcode_to_trackml(sec))
    fields = ("vertex_id", "primary_id", "generation", "secondary_id", "process")
    assert tuple(int(f[k][0]) for k in fields) == (3, 7, 1, 5, 2)


def test_particles_csv_columns():
    parts = generate(np.random.default_rng(2), pileup=1)
    df = acts_engine.particles_csv(parts)
    # the column layout of ACTS v40+ CsvParticleWriter/Reader
    assert list(df.columns) == ["particle_id_pv", "particle_id_sv", "particle_id_part", "particle_id_gen",
                                "particle_id_subpart", "particle_type", "process", "vx", "vy", "vz", "vt",
                                "px", "py", "pz", "m", "q"]
    assert len(df) == len(parts["particle_id"])
    np.testing.assert_array_equal(df["q"], parts["q"])
    np.testing.assert_array_equal(acts_engine.barcode_to_trackml(df), parts["particle_id"])


def _fake_acts_hits(seed: int):
    """Sim hits in ACTS's CSV layout, made from a built-in event's truth (no smearing, all hits)."""
    ev = simulate_event(seed=seed, pileup=2, efficiency=1.0)
    t = ev.truth.merge(ev.hits[["hit_id", "volume_id", "layer_id", "module_id"]], on="hit_id")
    hits = pd.DataFrame({
        **acts_engine.trackml_to_barcode(t["particle_id"].to_numpy()),
        "geometry_id": _geometry_id(t["volume_id"], t["layer_id"], t["module_id"], approach=0),
        **{c: t[c].to_numpy(np.float64) for c in ("tx", "ty", "tz", "tpx", "tpy", "tpz")},
    })
    return ev, hits


def test_crossings_from_hits_to_event():
    ev, hits = _fake_acts_hits(3)
    p = ev.particles  # the engine passes the generated particles; here the source event's
    parts = {"particle_id": p["particle_id"].to_numpy(), "particle_type": p["particle_type"].to_numpy(),
             "q": p["q"].to_numpy(), "mass": np.full(len(p), 0.14),
             **{c: p[c].to_numpy(np.float64) for c in ("vx", "vy", "vz", "px", "py", "pz")}}
    layers = layers_of((7, 8, 9))
    cross, parts2 = acts_engine.crossings_from_hits(hits, parts, layers)
    pixel = ev.hits["volume_id"].isin([7, 8, 9]).to_numpy()
    assert len(cross["layer"]) == pixel.sum()  # other volumes dropped
    cfg = Config(efficiency=1.0, smearing=False)
    out = finish_event(cross, parts2, layer_table(layers), cfg, np.random.default_rng(0), event_id=5)
    assert out.event_id == 5 and set(out.hits["volume_id"]) <= {7, 8, 9}
    # same (particle, module, true position) multiset as the source event's pixel hits
    src = ev.truth[pixel].merge(ev.hits[["hit_id", "module_id"]], on="hit_id")
    got = out.truth.merge(out.hits[["hit_id", "module_id"]], on="hit_id")
    key = ["particle_id", "module_id", "tx", "ty", "tz"]
    pd.testing.assert_frame_equal(src[key].sort_values(key).reset_index(drop=True),
                                  got[key].sort_values(key).reset_index(drop=True))
    nh = out.particles.set_index("particle_id")["nhits"]
    assert (nh.reindex(got["particle_id"].value_counts().index) == got["particle_id"].value_counts()).all()


def test_secondaries_are_added_from_the_particle_table():
    _, hits = _fake_acts_hits(4)
    parts = generate(np.random.default_rng(0), gun=1)
    # all hits belong to one unknown secondary; only the secondaries table knows it
    barcode = {"particle_id_pv": 1, "particle_id_sv": 0, "particle_id_part": 1, "particle_id_gen": 1,
               "particle_id_subpart": 1}
    hits = hits.assign(**barcode)
    secondaries = pd.DataFrame({**{k: [v] for k, v in barcode.items()}, "particle_type": [11], "process": [0],
                                "vx": [1.0], "vy": [0.0], "vz": [0.0], "vt": [0.0], "px": [0.5],
                                "py": [0.0], "pz": [0.1], "m": [0.000511], "q": [-1.0]})
    cross, parts2 = acts_engine.crossings_from_hits(hits, parts, LAYERS, secondaries)
    assert len(parts2["particle_id"]) == len(parts["particle_id"]) + 1 and len(cross["layer"]) == len(hits)
    assert parts2["particle_type"][-1] == 11 and parts2["q"][-1] == -1
    dropped, _ = acts_engine.crossings_from_hits(hits, parts, LAYERS)  # without the table: dropped
    assert len(dropped["layer"]) == 0


def test_missing_pyacts_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "acts", None)  # makes `import acts` raise ImportError
    with pytest.raises(InputError, match=r'the ACTS engine needs pyacts: pip install "trackformers\[acts\]"'):
        simulate_event(seed=1, engine="acts")


def _module_table():
    """Two layers: a pixel-barrel-like layer with two rectangles, a disk layer with two trapezoids (mm)."""
    ex, ey, ez = np.eye(3)
    return {"layer": np.array([0, 0, 1, 1]), "module_id": np.array([1, 2, 1, 2]),
            "center": np.array([[32.0, 0, 0], [0, 32.0, 100.0], [100.0, 0, 600.0], [0, 200.0, 600.0]]),
            "u": np.array([ey, -ex, ey, -ex]), "v": np.array([ez, ez, ex, ey]),
            "half_x_lo": np.array([8.4, 8.4, 10.0, 16.4]), "half_x_hi": np.array([8.4, 8.4, 30.0, 24.2]),
            "half_y": np.array([36.0, 36.0, 40.0, 78.0])}


def test_noise_sample_uniform_on_modules():
    tab = _module_table()
    layer, module, xyz = acts_noise.sample(tab, np.array([20_011, 30_011]), np.random.default_rng(7))
    assert len(layer) == 50_022 and (np.bincount(layer) == [20_011, 30_011]).all()
    row = {(int(lay), int(m)): i for i, (lay, m) in enumerate(zip(tab["layer"], tab["module_id"], strict=True))}
    row = np.array([row[(int(lay), int(m))] for lay, m in zip(layer, module, strict=True)])
    d = xyz - tab["center"][row]
    x, y = (d * tab["u"][row]).sum(1), (d * tab["v"][row]).sum(1)
    np.testing.assert_allclose((d * np.cross(tab["u"][row], tab["v"][row])).sum(1), 0, atol=1e-9)  # on plane
    hy, lo, hi = tab["half_y"][row], tab["half_x_lo"][row], tab["half_x_hi"][row]
    assert (np.abs(y) <= hy + 1e-9).all()
    assert (np.abs(x) <= lo + (hi - lo) * (y / hy + 1) / 2 + 1e-9).all()  # inside the trapezoid
    # uniform in area: modules picked by area, and the wide half of a trapezoid gets its share
    area = (lo + hi) * hy
    on = layer == 1
    frac = np.mean(module[on] == 1)
    expect = (10 + 30) * 40 / ((10 + 30) * 40 + (16.4 + 24.2) * 78)
    assert abs(frac - expect) < 0.01
    first = on & (module == 1)  # trapezoid 10 -> 30 mm: area above y = 0 is (20 + 30) / (10 + 20 + 20 + 30)
    assert abs(np.mean(y[first] > 0) - 50 / 80) < 0.015
    assert area.shape == (len(layer),)


def test_add_noise_to_event():
    ev = simulate_event(seed=5, pileup=3, volumes=(8,))
    layers = layers_of((8,))
    rect = {k: v[:2] for k, v in _module_table().items()}  # the two rectangles, repeated on the 4 layers
    tab = {k: np.concatenate([v] * 4) for k, v in rect.items()}
    tab["layer"] = np.repeat(np.arange(4), 2)
    out = acts_noise.add_noise(ev, tab, layers, 0.5, np.random.default_rng(3))
    noise = out.truth["particle_id"] == 0
    assert 0.4 * len(ev.hits) < noise.sum() < 0.6 * len(ev.hits)  # Poisson(0.5 x hits) per layer
    got = out.hits[noise.to_numpy()].groupby("layer_id").size()
    assert (abs(got / ev.hits.groupby("layer_id").size() - 0.5) < 0.15).all()
    assert (out.truth.loc[noise, "weight"] == 0).all()
    assert (out.hits["hit_id"].to_numpy() == np.arange(1, len(out.hits) + 1)).all()
    assert set(out.hits.loc[noise.to_numpy(), "module_id"]) <= {1, 2}
    assert out.hits.dtypes.equals(ev.hits.dtypes) and out.truth.dtypes.equals(ev.truth.dtypes)
    key = ["particle_id", "tx", "ty", "tz"]  # particle hits unchanged, only renumbered and shuffled
    pd.testing.assert_frame_equal(out.truth.loc[~noise, key].sort_values(key).reset_index(drop=True),
                                  ev.truth[key].sort_values(key).reset_index(drop=True))
    assert acts_noise.add_noise(ev, tab, layers, 0.0, np.random.default_rng(3)) is ev


needs_pyacts = pytest.mark.skipif(not HAVE_PYACTS, reason="pyacts (the acts extra) is not installed")


@needs_pyacts
def test_acts_engine_against_builtin():
    a = simulate_event(seed=11, pileup=20, engine="acts")
    b = simulate_event(seed=11, pileup=20)
    # the same generator: the same particles, and Fatras adds no charged secondaries with hits here
    assert len(a.particles) >= len(b.particles)
    assert set(a.hits["volume_id"]) == {7, 8, 9, 12, 13, 14, 16, 17, 18}
    assert (a.truth["particle_id"] != 0).all()  # noise is off by default
    per_particle = [len(e.hits) / (e.particles["nhits"] > 0).sum() for e in (a, b)]
    assert abs(per_particle[0] / per_particle[1] - 1) < 0.1
    assert abs(len(a.hits) / len(b.hits) - 1) < 0.1
    for vols in ((7, 8, 9), (12, 13, 14), (16, 17, 18)):
        share = [e.hits["volume_id"].isin(vols).mean() for e in (a, b)]
        assert abs(share[0] / share[1] - 1) < 0.2, vols


@needs_pyacts
def test_acts_hits_lie_on_generic_detector_layers():
    ev = simulate_event(seed=3, pileup=2, engine="acts", noise=0.2)
    t = ev.truth.merge(ev.hits, on="hit_id")
    pos = {(lay.volume_id, lay.layer_id): lay for lay in LAYERS}
    lay = [pos[(v, l_)] for v, l_ in zip(t["volume_id"], t["layer_id"], strict=True)]
    disk = np.array([x.kind == "disk" for x in lay])
    where = np.array([x.position for x in lay])
    r = np.hypot(t["tx"], t["ty"]).to_numpy()
    # planar modules around the TrackML radius / z (stagger and tilt: a few mm)
    assert (np.abs(r - where)[~disk] < 8).all() and (np.abs(t["tz"].to_numpy() - where)[disk] < 8).all()
    assert ((t["module_id"] >= 1) & (t["module_id"] < 1 << 20)).all()
    noise = t["particle_id"] == 0
    assert 0.1 < noise.mean() < 0.25
    assert (t.loc[noise, "weight"] == 0).all()
    # smearing: measured minus true within 6 sigma (pixel: 15 um)
    pix = (t["volume_id"].isin([7, 8, 9]) & ~noise).to_numpy()
    d = np.hypot(t["x"] - t["tx"], t["y"] - t["ty"])[pix]
    assert 0 < d.median() < 0.09


@needs_pyacts
def test_acts_truth_helix_has_the_particle_pt():
    # interactions off: a charged particle in the constant 2 T field is an exact helix
    ev = simulate_event(seed=2, engine="acts", gun=23, gun_pt=(1.0, 20.0), scattering=False, smearing=False)
    p = ev.particles.set_index("particle_id")
    checked = 0
    for pid, hits in ev.truth.groupby("particle_id"):
        if len(hits) < 5:
            continue
        x, y = hits["tx"].to_numpy(float), hits["ty"].to_numpy(float)
        a = np.stack([x, y, np.ones_like(x)], axis=1)
        cx, cy, c = np.linalg.lstsq(a, x * x + y * y, rcond=None)[0]
        radius = np.sqrt(c + cx * cx / 4 + cy * cy / 4)
        pt = np.hypot(p.loc[pid, "px"], p.loc[pid, "py"])
        assert abs(radius / (pt / (0.299792458 * 2.0) * 1000) - 1) < 0.01, (pid, radius, pt)
        checked += 1
    assert checked >= 15


@needs_pyacts
def test_acts_engine_is_deterministic_and_selects_volumes():
    a = simulate_event(seed=4, pileup=1, engine="acts")
    b = simulate_event(seed=4, pileup=1, engine="acts")
    pd.testing.assert_frame_equal(a.hits, b.hits)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    c = simulate_event(seed=5, pileup=1, engine="acts")
    assert not a.hits[["x", "y", "z"]].equals(c.hits[["x", "y", "z"]])
    pixel = simulate_event(seed=4, pileup=1, engine="acts", volumes=(7, 8, 9))
    assert set(pixel.hits["volume_id"]) <= {7, 8, 9}
    assert len(pixel.hits) == pytest.approx(a.hits["volume_id"].isin([7, 8, 9]).sum(), rel=0.1)


@needs_pyacts
def test_fatras_secondaries_get_particle_rows(tmp_path):
    # electrons radiate photons that convert: Fatras's charged secondaries must come back with their rows
    from trackformers.simulation import acts_fatras

    parts = generate(np.random.default_rng(1), gun=100, gun_pt=(5.0, 20.0))
    parts["particle_type"] = np.where(parts["q"] > 0, -11, 11)
    parts["mass"] = np.full(len(parts["q"]), 0.000511)
    hits, sec = acts_fatras.run(acts_engine.particles_csv(parts), seed=3, bfield=2.0, interactions=True,
                                p_min=0.05, workdir=tmp_path)
    assert (sec["particle_id_gen"] > 0).all() and len(sec) > 0
    assert (hits["particle_id_gen"] > 0).any()
    cross, parts2 = acts_engine.crossings_from_hits(hits, parts, LAYERS, sec)
    assert len(cross["layer"]) == len(hits)  # every hit found its particle
    added = decode_particle_id(parts2["particle_id"][len(parts["particle_id"]):])
    assert (added["generation"] > 0).all() and set(np.abs(parts2["particle_type"][len(parts["q"]):])) <= {11}
    assert np.isfinite(hits[["tx", "ty", "tz", "tpx", "tpy", "tpz"]].to_numpy()).all()
