"""Hit features, targets, φ-sort round trip and packing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from trackformers.events import Event
from trackformers.features import FeatureConfig, hit_features, hit_targets, moved_along_beam, pack_events, phi_sort


def toy_event(n_particles: int, n_noise: int, seed: int, event_id: int = 0, cells: bool = False) -> Event:
    """Straight tracks from the origin through 4 barrel layers, plus noise hits (particle_id 0)."""
    rng = np.random.default_rng(seed)
    radii = np.array([32.0, 72.0, 116.0, 172.0])
    rows, truth, parts = [], [], []
    for p in range(n_particles):
        phi0, eta, pt = rng.uniform(-math.pi, math.pi), rng.uniform(-2, 2), rng.uniform(0.3, 5)
        pid = 1000 + p
        curl = rng.uniform(-1e-3, 1e-3)  # rad/mm: bends tracks a little, so no two hits share φ
        for lay, r in enumerate(radii):
            phi = phi0 + curl * r
            x, y, z = r * math.cos(phi), r * math.sin(phi), r * math.sinh(eta)
            rows.append((x, y, z, 8, 2 * (lay + 1)))
            truth.append(pid)
        parts.append((pid, 211, 0.0, 0.0, 0.0, pt * math.cos(phi0), pt * math.sin(phi0), pt * math.sinh(eta),
                      1 if p % 2 else -1, 4))
    for _ in range(n_noise):
        r, phi = rng.choice(radii), rng.uniform(-math.pi, math.pi)
        rows.append((r * math.cos(phi), r * math.sin(phi), rng.uniform(-400, 400), 8, 2))
        truth.append(0)
    order = rng.permutation(len(rows))
    arr = np.array(rows)[order]
    n = len(rows)
    hits = pd.DataFrame({"hit_id": np.arange(1, n + 1), "x": arr[:, 0].astype(np.float32),
                         "y": arr[:, 1].astype(np.float32), "z": arr[:, 2].astype(np.float32),
                         "volume_id": arr[:, 3].astype(np.int64), "layer_id": arr[:, 4].astype(np.int64),
                         "module_id": np.ones(n, np.int64)})
    pid = np.array(truth, dtype=np.int64)[order]
    zeros = np.zeros(n, np.float32)
    tr = pd.DataFrame({"hit_id": hits["hit_id"], "particle_id": pid, "tx": hits["x"], "ty": hits["y"],
                       "tz": hits["z"], "tpx": zeros, "tpy": zeros, "tpz": zeros, "weight": zeros + 1.0 / n})
    columns = ["particle_id", "particle_type", "vx", "vy", "vz", "px", "py", "pz", "q", "nhits"]
    ints = {"particle_id", "particle_type", "q", "nhits"}
    dtypes = {c: "int64" if c in ints else "float64" for c in columns}
    particles = pd.DataFrame(parts, columns=columns).astype(dtypes)
    cell_df = None
    if cells:
        cell_df = pd.DataFrame({"hit_id": np.repeat(hits["hit_id"].to_numpy(), 2), "ch0": 0, "ch1": 0,
                                "value": 0.5})
    return Event(event_id, hits, tr, particles, cells=cell_df).validate()


def test_features_columns_and_values() -> None:
    ev = toy_event(3, 2, seed=1)
    f = hit_features(ev, FeatureConfig(r_scale=100.0))
    assert f.shape == (len(ev.hits), 7) and f.dtype == np.float32
    x, y, z = (ev.hits[c].to_numpy(np.float64) for c in "xyz")
    r = np.hypot(x, y)
    np.testing.assert_allclose(f[:, 0], r / 100.0, rtol=1e-5)
    np.testing.assert_allclose(f[:, 1] ** 2 + f[:, 2] ** 2, 1.0, rtol=1e-5)
    np.testing.assert_allclose(f[:, 3], z / 3000.0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(f[:, 4], np.arcsinh(z / r) / 4.0, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(f[:, 5], x / r**2 * 30.0, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(f[:, 6], y / r**2 * 30.0, rtol=1e-4, atol=1e-7)


def test_cell_features_present_and_absent() -> None:
    cfg = FeatureConfig(use_cells=True)
    with_cells = hit_features(toy_event(2, 1, seed=2, cells=True), cfg)
    np.testing.assert_allclose(with_cells[:, 7], math.log(3.0), rtol=1e-6)  # 2 cells per hit
    np.testing.assert_allclose(with_cells[:, 8], math.log(2.0), rtol=1e-6)  # summed charge 1.0
    without = hit_features(toy_event(2, 1, seed=2), cfg)
    assert without.shape[1] == 9 and not without[:, 7:].any()


def test_targets_from_particles() -> None:
    ev = toy_event(4, 3, seed=3)
    t = hit_targets(ev)
    assert t is not None and t["particle_id"].dtype == np.int64
    noise = t["particle_id"] == 0
    assert noise.sum() == 3 and (t["nhits"][noise] == 0).all() and (t["nhits"][~noise] == 4).all()
    parts = ev.particles.set_index("particle_id")
    for i in np.flatnonzero(~noise):
        row = parts.loc[t["particle_id"][i]]
        assert abs(t["pt"][i] - math.hypot(row.px, row.py)) < 1e-4
        assert t["charge"][i] == row.q


def test_target_vertex_z_from_particles_nan_when_unknown() -> None:
    ev = toy_event(4, 3, seed=3)
    ev.particles["vz"] = [-70.5, 0.0, 12.25, 130.0]
    missing = int(ev.particles["particle_id"].iloc[3])
    ev.particles = ev.particles.iloc[:3]  # the last particle has hits but no particles row
    t = hit_targets(ev)
    by_pid = dict(zip(ev.particles["particle_id"], ev.particles["vz"]))
    for pid, vz in zip(t["particle_id"], t["vz"]):
        if pid == 0:
            assert vz == 0.0
        elif pid == missing:
            assert np.isnan(vz)
        else:
            assert vz == np.float32(by_pid[pid])
    assert t["vz"].dtype == np.float32 and (t["particle_id"] == missing).sum() == 4
    batch = pack_events([ev, toy_event(2, 1, seed=4)])
    assert batch.vz is not None and batch.vz.shape == (batch.num_hits,)
    torch.testing.assert_close(batch.vz[: len(t["vz"])], torch.from_numpy(t["vz"]), equal_nan=True)


def test_sort_unsort_round_trip_and_phi_order() -> None:
    events = [toy_event(5, 4, seed=s, event_id=s) for s in (4, 5, 6)]
    batch = pack_events(events)
    cu = batch.cu_seqlens.tolist()
    assert cu == [0, 24, 48, 72] and batch.cu_seqlens.dtype == torch.int32 and batch.max_seqlen == 24
    sorted_phi = batch.phi[batch.sort_index]
    for a, b in zip(cu[:-1], cu[1:]):
        assert (sorted_phi[a:b].diff() >= 0).all()
        assert set(batch.sort_index[a:b].tolist()) == set(range(a, b))  # events stay in place
    x = torch.randn(batch.num_hits, 3)
    assert torch.equal(x[batch.sort_index][batch.unsort_index], x)
    perm, inverse = phi_sort(batch.phi, batch.cu_seqlens)  # the attention package's torch version
    assert torch.equal(perm, batch.sort_index) and torch.equal(inverse, batch.unsort_index)
    assert torch.equal(batch.hit_ids[:24], torch.as_tensor(events[0].hits["hit_id"].to_numpy()))
    assert batch.event_ids.tolist() == [4, 5, 6]
    assert batch.particle_id is not None and batch.particle_id.dtype == torch.int64


def test_pack_without_truth_and_empty_event() -> None:
    ev = toy_event(2, 0, seed=7)
    bare = Event(1, ev.hits)
    empty = Event(2, ev.hits.iloc[:0])
    batch = pack_events([bare, empty])
    assert batch.particle_id is None and batch.cu_seqlens.tolist() == [0, 8, 8]
    assert batch.features.shape == (8, 7)


def test_large_particle_ids_stay_exact() -> None:
    ev = toy_event(2, 1, seed=8)
    big = np.int64(4_503_668_346_847_233)  # a TrackML-sized id, not representable in float64 exactly +1
    ev.truth.loc[ev.truth["particle_id"] == 1000, "particle_id"] = big
    ev.particles.loc[ev.particles["particle_id"] == 1000, "particle_id"] = big
    ev.truth = ev.truth.iloc[1:]  # one hit without a truth row → noise
    t = hit_targets(ev)
    assert big in t["particle_id"].tolist()


def moved(event: Event, dz: float) -> Event:
    """Reference: the event with its hits moved by hand to z + dz (mm)."""
    hits = event.hits.copy()
    hits["z"] = (hits["z"].to_numpy(np.float64) + dz).astype(hits["z"].dtype)
    return Event(event.event_id, hits, event.truth, event.particles, cells=event.cells)


@pytest.mark.parametrize("dz", [-137.5, -40.0, 0.0, 3.25, 80.0])
@pytest.mark.parametrize("cells", [False, True])
def test_moved_along_beam_equals_packing_the_moved_event(dz: float, cells: bool) -> None:
    config = FeatureConfig(use_cells=cells)
    event = toy_event(23, 7, seed=5, cells=cells)
    event.hits.loc[3, ["x", "y"]] = 0.0  # a hit on the beam line: η takes the limiting ±10 of its z's sign
    event.hits.loc[3, "z"] = 12.0 if dz >= -12.0 else -300.0
    batch = pack_events([event], config, targets=False)
    before = batch.features.clone()
    got = moved_along_beam(batch, dz, config)
    want = pack_events([moved(event, dz)], config, targets=False)
    torch.testing.assert_close(got.features, want.features, rtol=1e-6, atol=2e-7)
    torch.testing.assert_close(got.eta, want.eta, rtol=1e-6, atol=2e-6)
    for name in ("categories", "cu_seqlens", "sort_index", "unsort_index", "hit_ids", "phi"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert torch.equal(batch.features, before)  # the input batch is left as it was
    if dz == 0.0:
        assert got is batch
    else:  # the z and η columns did change, so the comparison above could fail
        assert not torch.equal(got.features[:, 3], before[:, 3]) and not torch.equal(got.features[:, 4], before[:, 4])
        assert float(got.eta[3]) in (10.0, -10.0)  # rows are in hits-table order


def test_moved_along_beam_moves_the_truth_vertex_with_the_hits() -> None:
    event = toy_event(6, 3, seed=9)
    event.particles["vz"] = np.linspace(-90.0, 90.0, 6)
    batch = pack_events([event])
    vz = batch.vz.clone()
    got = moved_along_beam(batch, -40.0)
    torch.testing.assert_close(got.vz, vz - 40.0)
    assert torch.equal(batch.vz, vz)  # the input batch is left as it was
    assert moved_along_beam(pack_events([event], targets=False), 5.0).vz is None
