"""The ACTS engine: id mappings and hits -> event conversion (pure); the engine itself only with pyacts."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from trackformers.errors import InputError
from trackformers.simulation import acts as acts_engine
from trackformers.simulation import simulate_event
from trackformers.simulation.builtin import Config, finish_event, layer_table
from trackformers.simulation.generator import decode_particle_id, generate
from trackformers.simulation.geometry import LAYERS, layers_of

HAVE_PYACTS = importlib.util.find_spec("acts") is not None


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
    assert bc.dtype == np.uint64
    np.testing.assert_array_equal(bc >> np.uint64(52), decode_particle_id(pid)["vertex_id"].astype(np.uint64))
    np.testing.assert_array_equal(acts_engine.barcode_to_trackml(bc), pid)
    # a Fatras secondary: vertex 3, vertex_secondary 2, particle 7, generation 1, sub-particle 5
    sec = np.array([(3 << 52) | (2 << 40) | (7 << 24) | (1 << 16) | 5], dtype=np.uint64)
    f = decode_particle_id(acts_engine.barcode_to_trackml(sec))
    fields = ("vertex_id", "primary_id", "generation", "secondary_id", "process")
    assert tuple(int(f[k][0]) for k in fields) == (3, 7, 1, 5, 2)


def test_particles_csv_columns():
    parts = generate(np.random.default_rng(2), pileup=1)
    df = acts_engine.particles_csv(parts)
    assert list(df.columns) == ["particle_id", "particle_type", "process", "vx", "vy", "vz", "vt",
                                "px", "py", "pz", "m", "q"]
    assert df["particle_id"].dtype == np.uint64 and len(df) == len(parts["particle_id"])
    np.testing.assert_array_equal(df["q"], parts["q"])


def _fake_acts_hits(seed: int):
    """Sim hits in ACTS's CSV layout, made from a built-in event's truth (no smearing, all hits)."""
    ev = simulate_event(seed=seed, pileup=2, efficiency=1.0)
    t = ev.truth.merge(ev.hits[["hit_id", "volume_id", "layer_id", "module_id"]], on="hit_id")
    hits = pd.DataFrame({
        "particle_id": acts_engine.trackml_to_barcode(t["particle_id"].to_numpy()),
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
    sec_barcode = np.uint64((1 << 52) | (1 << 24) | (1 << 16) | 1)
    hits = hits.assign(particle_id=sec_barcode)
    secondaries = pd.DataFrame({"particle_id": [sec_barcode], "particle_type": [11], "process": [0],
                                "vx": [1.0], "vy": [0.0], "vz": [0.0], "vt": [0.0], "px": [0.5],
                                "py": [0.0], "pz": [0.1], "m": [0.000511], "q": [-1.0]})
    cross, parts2 = acts_engine.crossings_from_hits(hits, parts, LAYERS, secondaries)
    assert len(parts2["particle_id"]) == len(parts["particle_id"]) + 1 and len(cross["layer"]) == len(hits)
    assert parts2["particle_type"][-1] == 11 and parts2["q"][-1] == -1
    dropped, _ = acts_engine.crossings_from_hits(hits, parts, LAYERS)  # without the table: dropped
    assert len(dropped["layer"]) == 0


@pytest.mark.skipif(HAVE_PYACTS, reason="pyacts is installed")
def test_missing_pyacts_message():
    with pytest.raises(InputError, match=r'pip install "trackformers\[acts\]"'):
        simulate_event(seed=1, engine="acts")


def test_acts_engine_against_builtin():
    pytest.importorskip("acts")
    a = simulate_event(seed=11, pileup=5, engine="acts")
    b = simulate_event(seed=11, pileup=5)
    assert set(a.hits["volume_id"]) <= {7, 8, 9, 12, 13, 14, 16, 17, 18}
    assert (a.truth["particle_id"] != 0).all() or a.truth["particle_id"].eq(0).mean() < 0.05
    per_particle = [len(e.hits) / max(1, (e.particles["nhits"] > 0).sum()) for e in (a, b)]
    assert abs(per_particle[0] / per_particle[1] - 1) < 0.25
    pixel = [e.hits["volume_id"].isin([7, 8, 9]).mean() for e in (a, b)]
    assert abs(pixel[0] - pixel[1]) < 0.15
