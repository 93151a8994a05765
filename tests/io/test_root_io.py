"""ACTS ROOT I/O: id codecs, our TTree writer round trip, ACTS-style, jagged and RNTuple inputs, bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared builders beside this file
from make_io_events import assert_events_equal, random_event  # noqa: E402

from trackformers.errors import InputError
from trackformers.io import read_events, root
from trackformers.io.acts_ids import (
    BARCODE_FIELDS,
    decode_geometry_id,
    encode_geometry_id,
    pack_barcode,
    unpack_barcode,
)
from trackformers.io.root_table import EventIndex, Table, open_file
from trackformers.io.root_vector import VectorTreeWriter


def _ref_unpack(word: int, fields) -> dict[str, int]:  # noqa: ANN001 - plain Python reference
    u = word % 2**64
    return {name: (u >> shift) & ((1 << bits) - 1) for name, shift, bits in fields}


def test_barcode_round_trip_and_reference():
    rng = np.random.default_rng(1)
    ids = np.concatenate([rng.integers(-(2**63), 2**63 - 1, 997, dtype=np.int64),
                          np.array([0, 1, -1, 2**63 - 1, -(2**63)], dtype=np.int64)])
    parts = unpack_barcode(ids)
    np.testing.assert_array_equal(pack_barcode(**parts), ids)
    for i in (0, 5, 996, 997, 1001):
        assert {k: int(v[i]) for k, v in parts.items()} == _ref_unpack(int(ids[i]), BARCODE_FIELDS)
    # documented layout: vertex_primary in the top 12 bits, sub_particle in the lowest 16
    assert pack_barcode(vertex_primary=np.array([1]), vertex_secondary=np.array([0]), particle=np.array([2]),
                        generation=np.array([0]), sub_particle=np.array([3]))[0] == (1 << 52) | (2 << 24) | 3
    with pytest.raises(InputError, match="particle"):
        pack_barcode(vertex_primary=np.array([0]), particle=np.array([70000]))


def test_geometry_id_decode_matches_acts_layout():
    vol, lay, mod = np.array([8, 17, 7]), np.array([2, 12, 14]), np.array([1, 4099, 1048575])
    geo = encode_geometry_id(volume_id=vol, layer_id=lay, sensitive_id=mod)
    assert geo.dtype == np.uint64
    assert int(geo[0]) == (8 << 56) | (2 << 36) | (1 << 8)
    dec = decode_geometry_id(geo)
    np.testing.assert_array_equal(dec["volume_id"], vol)
    np.testing.assert_array_equal(dec["layer_id"], lay)
    np.testing.assert_array_equal(dec["sensitive_id"], mod)
    full = np.array([(3 << 56) | (5 << 48) | (7 << 36) | (9 << 28) | (11 << 8) | 13], dtype=np.uint64)
    assert {k: int(v[0]) for k, v in decode_geometry_id(full).items()} == {
        "volume_id": 3, "boundary_id": 5, "layer_id": 7, "approach_id": 9, "sensitive_id": 11, "extra_id": 13}


EVENT_SIZES = [(3, 101), (1000, 257), (5, 0), (7, 13), (11, 1)]


@pytest.mark.parametrize("target", ["events.root", "folder"])
def test_our_files_read_back_identically_as_ttrees(tmp_path: Path, target: str):
    events = [random_event(e, n) for e, n in EVENT_SIZES]
    paths = root.write(iter(events), tmp_path / target)
    hits_file = uproot.open(paths[0])
    assert isinstance(hits_file["hits"], uproot.TTree)
    assert hits_file["hits"].num_entries == sum(n for _, n in EVENT_SIZES)
    parts_file = uproot.open(paths[-1])
    assert isinstance(parts_file["particles"], uproot.TTree)
    assert parts_file["particles"].num_entries == len(EVENT_SIZES)
    if target == "folder":
        assert [p.name for p in paths] == ["hits.root", "particles.root"]
        globbed = list(read_events(str(tmp_path / target / "*.root")))  # particles.root goes with hits.root
        assert [e.event_id for e in globbed] == [e for e, _ in EVENT_SIZES]
    only = list(root.read(tmp_path / target, events={5, 7}))  # an event without hits survives too
    assert [(e.event_id, len(e)) for e in only] == [(5, 0), (7, 13)]
    for step in (root.STEP_SIZE, 7):  # batched reads across chunk boundaries give the same events
        back = list(root.read(tmp_path / target, step_size=step))
        assert [e.event_id for e in back] == [e for e, _ in EVENT_SIZES]
        for a, b in zip(events, back):
            assert_events_equal(a, b)


def test_hits_only_events_and_detection(tmp_path: Path):
    events = [random_event(e, 31, truth=False, particles=False) for e in (1, 2)]
    (out,) = root.write(events, tmp_path / "h.root")
    back = list(read_events(out))
    assert back[0].truth is None and back[0].particles is None
    assert_events_equal(events[1], back[1])
    weird = tmp_path / "no_suffix"
    weird.write_bytes(out.read_bytes())
    assert root.detect(weird) and root.detect(tmp_path) and not root.detect(tmp_path / "missing.txt")


def test_event_without_particles_after_one_with_them(tmp_path: Path):
    # The later event gets an empty particles entry (it crashed on the missing nhits column once).
    first, second = random_event(1, 29), random_event(2, 31, particles=False)
    (out,) = root.write([first, second], tmp_path / "mixed.root")
    back = list(read_events(out))
    assert_events_equal(first, back[0])
    assert back[1].particles is not None and len(back[1].particles) == 0
    assert np.array_equal(back[1].hits["hit_id"].to_numpy(), second.hits["hit_id"].to_numpy())


def _acts_style(folder: Path, *, old_ids: bool = False, vectors: bool = False) -> dict[str, np.ndarray]:
    """An ACTS RootSimHitWriter/RootParticleWriter-like pair: barcodes + geometry_id only, true positions.
    ``vectors``: particles as ACTS writes them (std::vector branches, a ``particle_hash`` that is no id)."""
    rng = np.random.default_rng(5)
    n = 53
    ev = np.repeat([4, 9], [20, 33]).astype(np.uint32)
    pid = np.array([(1 << 52) | (1 << 24), (2 << 52) | (7 << 24) | 1, (3 << 52) | (1 << 40) | (4 << 24)])
    hit_p = pid[rng.integers(0, 3, n)]
    vol = rng.choice([8, 13, 17], n)
    geo = encode_geometry_id(volume_id=vol, layer_id=rng.integers(1, 5, n) * 2,
                             sensitive_id=rng.integers(1, 900, n))
    cols = {"event_id": ev, "geometry_id": geo,
            **{c: rng.normal(0, 200, n).astype(np.float32) for c in ("tx", "ty", "tz")},
            "tt": np.zeros(n, np.float32),
            **{c: rng.normal(0, 1, n).astype(np.float32) for c in ("tpx", "tpy", "tpz")},
            "index": np.zeros(n, np.int32)}
    if old_ids:
        cols["particle_id"] = hit_p.astype(np.uint64)
    else:
        cols |= {f"barcode_{k}": v.astype(np.uint32) for k, v in unpack_barcode(hit_p).items()}
    with uproot.recreate(folder / "hits.root") as f:
        f.mktree("hits", {k: v.dtype for k, v in cols.items()})
        f["hits"].extend(cols)
    fields = {k: np.tile(v, 2).astype(np.uint32) for k, v in unpack_barcode(pid).items()}
    fields |= {"particle_type": np.tile([13, -211, 11], 2).astype(np.int32),
               **{c: rng.normal(0, 1, 6).astype(np.float32) for c in ("vx", "vy", "vz")},
               **{c: rng.normal(0, 1, 6).astype(np.float32) for c in ("px", "py", "pz")},
               "q": np.tile([-1.0, 1.0, -1.0], 2).astype(np.float32), "pt": np.ones(6, np.float32)}
    with uproot.recreate(folder / "particles.root") as f:
        if vectors:
            fields["particle_hash"] = rng.integers(0, 2**63, 6).astype(np.uint64)  # a boost hash in ACTS
            w = VectorTreeWriter(f, "particles", {"event_id": "uint32"}, {k: v.dtype for k, v in fields.items()},
                                 title="particles")
            w.extend(np.array([3, 3]), {"event_id": np.array([4, 9]), **fields})
        else:
            f.mktree("particles", {"event_id": "uint32", "p": "var * {vertex_primary: uint32, vertex_secondary: "
                                   "uint32, particle: uint32, generation: uint32, sub_particle: uint32, "
                                   "particle_type: int32, vx: float32, vy: float32, vz: float32, px: float32, "
                                   "py: float32, pz: float32, q: float32, pt: float32}"},
                     field_name=lambda outer, inner: inner)
            f["particles"].extend({"event_id": np.array([4, 9], np.uint32),
                                   "p": ak.zip({k: ak.unflatten(v, [3, 3]) for k, v in fields.items()})})
    return {"pid": hit_p, "vol": vol, "geo": geo, **cols}


@pytest.mark.parametrize(("old_ids", "vectors"), [(False, False), (True, False), (False, True)])
def test_acts_style_file_is_decoded(tmp_path: Path, old_ids: bool, vectors: bool):
    ref = _acts_style(tmp_path, old_ids=old_ids, vectors=vectors)
    events = list(read_events(tmp_path / "hits.root"))
    assert [e.event_id for e in events] == [4, 9]
    e9 = events[1]
    sl = slice(20, 53)
    dec = decode_geometry_id(ref["geo"][sl])
    np.testing.assert_array_equal(e9.hits["volume_id"], dec["volume_id"])
    np.testing.assert_array_equal(e9.hits["layer_id"], dec["layer_id"])
    np.testing.assert_array_equal(e9.hits["module_id"], dec["sensitive_id"])
    np.testing.assert_array_equal(e9.hits["hit_id"], np.arange(1, 34))
    np.testing.assert_array_equal(e9.hits["x"], ref["tx"][sl])  # default: true positions, no smearing
    np.testing.assert_array_equal(e9.truth["particle_id"], ref["pid"][sl])
    assert sorted(e9.particles["particle_id"]) == sorted(set(ref["pid"].tolist()))
    assert e9.particles["q"].dtype == np.int64
    assert e9.particles["nhits"].sum() == 33
    assert np.isfinite(e9.truth["weight"]).all() and e9.truth["weight"].sum() == pytest.approx(1.0, abs=1e-5)


def test_smearing_is_opt_in_reproducible_and_within_resolution(tmp_path: Path):
    _acts_style(tmp_path)
    plain = next(iter(root.read(tmp_path, events={9})))
    a = next(iter(root.read(tmp_path, events={9}, smear=True, seed=3)))
    b = next(iter(root.read(tmp_path, events={9}, smear=True, seed=3)))
    assert_events_equal(a, b)
    d = np.hypot(a.hits["x"] - plain.hits["x"], a.hits["y"] - plain.hits["y"]).to_numpy()
    dz = np.abs(a.hits["z"] - plain.hits["z"]).to_numpy()
    assert (d > 0).all()
    pix = (a.hits["volume_id"] == 8).to_numpy()
    assert d[pix].max() < 0.15 and dz[pix].max() < 0.15  # 15 um sigma: 10 sigma bound
    np.testing.assert_array_equal(a.truth["tx"], plain.truth["tx"])  # truth stays true
    ours = random_event(2, 50)
    root.write([ours], tmp_path / "ours.root")
    (s,) = root.read(tmp_path / "ours.root", smear=True)  # our files: smeared from truth, not from x, y, z
    d = np.hypot(s.hits["x"] - ours.truth["tx"], s.hits["y"] - ours.truth["ty"]).to_numpy()
    assert d.max() < 40 and (d > 0).all()  # long strips: 3.1 mm sigma at most
    with uproot.recreate(tmp_path / "meas.root") as f:
        f.mktree("hits", {"event_id": "int32", "x": "float32", "y": "float32", "z": "float32",
                          "geometry_id": "uint64"})
    with pytest.raises(InputError, match="smear=True needs true positions"):
        list(root.read(tmp_path / "meas.root", smear=True))


def test_one_event_reads_only_its_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    events = [random_event(e, n) for e, n in [(1, 97), (2, 89), (3, 83), (4, 79)]]
    (out,) = root.write(events, tmp_path / "many.root")
    calls: list[tuple[str, list[str], int, int]] = []
    real = Table.read

    def spy(self, columns, start, stop):  # noqa: ANN001 - records, then delegates to the real reader
        calls.append((self.name, list(columns), start, stop))
        return real(self, columns, start, stop)

    monkeypatch.setattr(Table, "read", spy)
    (e3,) = root.read(out, events={3}, step_size=50)
    assert_events_equal(events[2], e3)
    lo = 97 + 89
    for tree, columns, start, stop in calls:
        if tree == "hits" and columns != ["event_id"]:
            assert lo <= start and stop <= lo + 83, (start, stop)
        assert stop - start <= 50 or tree != "hits" or columns != ["event_id"]


def _jagged(path: Path, lengths: dict[str, list[int]] | None = None) -> None:
    rng = np.random.default_rng(2)
    counts = [5, 0, 7]
    cols = {c: ak.unflatten(rng.normal(0, 100, sum(counts)).astype(np.float32), counts) for c in "xyz"}
    cols |= {c: ak.unflatten(rng.integers(1, 9, sum(counts)).astype(np.int32), counts)
             for c in ("volume_id", "layer_id", "module_id")}
    for c, n in (lengths or {}).items():
        cols[c] = ak.unflatten(np.ones(sum(n), np.float32), n)
    with uproot.recreate(path) as f:
        f.mktree("hits", {"event_id": "int64", **{c: f"var * {v.layout.content.dtype}"
                                                    for c, v in cols.items()}})
        f["hits"].extend({"event_id": np.array([21, 22, 23]), **cols})


def test_jagged_per_event_layout(tmp_path: Path):
    _jagged(tmp_path / "j.root")
    events = list(read_events(tmp_path / "j.root"))
    assert [(e.event_id, len(e)) for e in events] == [(21, 5), (22, 0), (23, 7)]
    assert events[2].truth is None
    np.testing.assert_array_equal(events[2].hits["hit_id"], np.arange(1, 8))
    arrays = uproot.open(tmp_path / "j.root")["hits"].arrays(["event_id", "x", "y", "z", "volume_id",
                                                             "layer_id", "module_id"])
    with uproot.recreate(tmp_path / "jrn.root") as f:
        f["hits"] = {k: arrays[k] for k in arrays.fields}  # the same per-event layout as an RNTuple
    assert "RNTuple" in type(uproot.open(tmp_path / "jrn.root")["hits"]).__name__
    for a, b in zip(events, read_events(tmp_path / "jrn.root")):
        assert_events_equal(a, b)
    _jagged(tmp_path / "bad.root", {"y": [5, 1, 7]})
    with pytest.raises(InputError, match="entry 1 has 1 values in branch 'y' but 0 in 'x'"):
        list(read_events(tmp_path / "bad.root"))


def test_colliderml_style_per_event_trees(tmp_path: Path):
    """Per-event vectors with ColliderML names: true_x.., surface_id, pdg_id, charge, no per-hit momentum."""
    counts, pcounts = [4, 6], [2, 3]
    pid = [np.array([11, 12]), np.array([21, 22, 23])]
    hit_pid = [np.array([11, 12, 0, 11]), np.array([21, 21, 22, 23, 0, 23])]
    flat = np.arange(10, dtype=np.float32)
    cols = {"x": flat + 0.5, "y": flat, "z": -flat, "true_x": flat, "true_y": flat, "true_z": -flat,
            "particle_id": np.concatenate(hit_pid), "volume_id": np.full(10, 8), "layer_id": np.full(10, 2),
            "surface_id": np.arange(100, 110)}
    pcols = {"particle_id": np.concatenate(pid), "pdg_id": np.array([13, -13, 211, -211, 11]),
             "charge": np.array([-1.0, 1.0, 1.0, -1.0, -1.0], np.float32),
             **{c: np.linspace(0.5, 2.5, 5).astype(np.float32) * (i + 1)
                for i, c in enumerate(("px", "py", "pz", "vx", "vy", "vz"))},
             "num_tracker_hits": np.array([2, 1, 2, 1, 2])}
    with uproot.recreate(tmp_path / "cml.root") as f:
        f.mktree("hits", {"event_id": "uint32", **{c: f"var * {v.dtype}" for c, v in cols.items()}})
        f["hits"].extend({"event_id": np.array([1, 2], np.uint32),
                          **{c: ak.unflatten(v, counts) for c, v in cols.items()}})
        f.mktree("particles", {"event_id": "uint32", **{c: f"var * {v.dtype}" for c, v in pcols.items()}})
        f["particles"].extend({"event_id": np.array([1, 2], np.uint32),
                               **{c: ak.unflatten(v, pcounts) for c, v in pcols.items()}})
    e1, e2 = read_events(tmp_path / "cml.root")
    np.testing.assert_array_equal(e2.hits["module_id"], np.arange(104, 110))
    np.testing.assert_array_equal(e2.hits["x"], flat[4:] + 0.5)  # measured positions, truth apart
    np.testing.assert_array_equal(e2.truth["tx"], flat[4:])
    np.testing.assert_array_equal(e2.particles["particle_type"], [211, -211, 11])
    np.testing.assert_array_equal(e2.particles["q"], [1, -1, -1])
    np.testing.assert_array_equal(e1.particles["nhits"], [2, 1])
    px = dict(zip(pcols["particle_id"].tolist(), pcols["px"].tolist()))
    expected = [px.get(p, 0.0) for p in hit_pid[1]]
    np.testing.assert_allclose(e2.truth["tpx"], expected)  # particle momentum stands in, 0 for noise


def test_rntuple_input(tmp_path: Path):
    ev = random_event(17, 61)
    (ours,) = root.write([ev], tmp_path / "t.root")
    arrays = uproot.open(ours)["hits"].arrays(library="np")
    with uproot.recreate(tmp_path / "rn.root") as f:
        f["hits"] = arrays  # uproot 5.7 writes an RNTuple here
    assert "RNTuple" in type(uproot.open(tmp_path / "rn.root")["hits"]).__name__
    (back,) = root.read(tmp_path / "rn.root")
    assert_events_equal(ev, back.__class__(back.event_id, back.hits, back.truth, ev.particles))
    assert back.particles is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_event_index_batches_match_plain_masking(tmp_path: Path, seed: int):
    """The batched entry-range reader against the plain reference ``x[event_id == e]`` on random layouts."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 53, 211]))
    runs = rng.integers(1, 9, n)  # run lengths; ids repeat across runs when seed is odd (unsorted file)
    ids = np.repeat(rng.integers(0, 6 if seed % 2 else 10**6, n), runs)[:n]
    x = rng.normal(size=n).astype(np.float32)
    with uproot.recreate(tmp_path / "i.root") as f:
        f.mktree("t", {"event_id": "int64", "x": "float32"})
        f["t"].extend({"event_id": ids, "x": x})
    table = Table(tmp_path / "i.root", open_file(tmp_path / "i.root"), "t")
    for step in (1, 2, 7, n):
        index = EventIndex(table, "x", step_size=step)
        assert list(index.ranges) == list(dict.fromkeys(ids.tolist()))
        chosen = [e for e in index.ranges if rng.random() < 0.6]
        got = list(index.iter_events(chosen, ["x"]))
        assert [e for e, _ in got] == chosen
        for eid, data in got:
            np.testing.assert_array_equal(data["x"], x[ids == eid])


def test_unsorted_event_ids_are_reassembled(tmp_path: Path):
    n = 12
    ev = np.array([5, 5, 6, 6, 5, 6, 5, 5, 6, 6, 6, 5])
    with uproot.recreate(tmp_path / "u.root") as f:
        cols = {"event_id": ev, "x": np.arange(n, dtype=np.float32), "y": np.zeros(n, np.float32),
                "z": np.zeros(n, np.float32), "volume_id": np.full(n, 8), "layer_id": np.full(n, 2),
                "module_id": np.arange(n)}
        f.mktree("hits", {k: v.dtype for k, v in cols.items()})
        f["hits"].extend(cols)
    for step in (3, 100):
        e5, e6 = root.read(tmp_path / "u.root", step_size=step)
        np.testing.assert_array_equal(e5.hits["x"], np.flatnonzero(ev == 5))
        np.testing.assert_array_equal(e6.hits["x"], np.flatnonzero(ev == 6))


def test_bad_inputs(tmp_path: Path):
    events = [random_event(e, 40) for e in (1, 2)]
    (good,) = root.write(events, tmp_path / "good.root")
    text = tmp_path / "text.root"
    text.write_text("not a root file\n")
    with pytest.raises(InputError, match="not a ROOT file .it starts with b'not '"):
        list(read_events(text))
    cut = tmp_path / "cut.root"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.root"):
        list(read_events(cut))
    with pytest.raises(InputError, match="no tree 'tracks'; the file holds hits, particles"):
        list(read_events(good, hits_tree="tracks"))
    with uproot.recreate(tmp_path / "nob.root") as f:
        f.mktree("hits", {"event_id": "int32", "tx": "float32", "ty": "float32", "tz": "float32"})
    with pytest.raises(InputError, match=r"missing branch\(es\) geometry_id .* it has event_id, tx, ty, tz"):
        list(read_events(tmp_path / "nob.root"))
    with pytest.raises(InputError, match="event id.* 99 not found"):
        list(read_events(good, events=[1, 99]))
    with pytest.raises(InputError, match="unknown ROOT reader option"):
        list(read_events(good, smearing=True))


def test_writer_rejects_bad_events_and_leaves_nothing(tmp_path: Path):
    a, b = random_event(1, 10), random_event(1, 12)
    with pytest.raises(InputError, match="appears twice"):
        root.write([a, b], tmp_path / "dup.root")
    c = random_event(2, 10, truth=False)
    with pytest.raises(InputError, match="truth is missing"):
        root.write([a, c], tmp_path / "out")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no partial file (folders may exist)


def test_simulated_events_round_trip_through_root(tmp_path: Path):
    simulation = pytest.importorskip("trackformers.simulation")
    events = [simulation.simulate_event(seed=s, pileup=2.0, event_id=s, volumes=(7, 8, 9)) for s in (1, 2)]
    root.write(events, tmp_path / "sim")
    for a, b in zip(events, read_events(tmp_path / "sim")):
        assert_events_equal(a, b)
