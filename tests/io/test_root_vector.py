"""std::vector<T> TTree branches: byte layout vs a plain reference and vs a ROOT-written file, round trips through
uproot and our reader, ACTS's particles schema, and (when ROOT is available) real ROOT reading our files."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared builders beside this file
import root_check  # noqa: E402
from make_io_events import assert_events_equal, random_event  # noqa: E402

from trackformers.io import read_events, root, root_write
from trackformers.io.root_vector import VECTOR_CLASSES, VectorTreeWriter, serialize_vectors

REFERENCE = Path(__file__).parent / "data" / "root_vectors.root"  # written by ROOT 6.40 (root_check reference)


def _values(dtype: np.dtype, n: int, rng: np.random.Generator) -> np.ndarray:
    if dtype.kind == "b":
        return rng.integers(0, 2, n).astype(bool)
    if dtype.kind == "f":
        return rng.normal(0, 1e3, n).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("dtype", ["float32", "uint64", "bool", "int16"])
def test_serialize_vectors_matches_plain_reference(dtype: str):
    rng = np.random.default_rng(0)
    counts = np.array([0, 2, 3, 0, 5, 7, 11, 1, 0, 13])
    values = _values(np.dtype(dtype), counts.sum(), rng).astype(np.dtype(dtype).newbyteorder(">"))
    payload, offsets = serialize_vectors(values, counts)
    ref, starts, at = b"", [0], 0
    for c in counts:  # one streamed std::vector per entry: byte count | version | size | elements
        body = struct.pack(">hi", 10, c) + values[at:at + c].tobytes()
        ref += struct.pack(">I", len(body) | 0x40000000) + body
        starts.append(len(ref))
        at += c
    assert payload.tobytes() == ref
    np.testing.assert_array_equal(offsets, starts)


def _write_like_reference(path: Path) -> uproot.TTree:
    ref = uproot.open(REFERENCE)["vectors"]
    data = ref.arrays(library="np")
    counts = np.array([len(v) for v in data["bool"]])
    cols = {k: (v if k == "event_id" else np.concatenate(v)) for k, v in data.items()}
    with uproot.recreate(path) as f:
        VectorTreeWriter(f, "vectors", {"event_id": "uint32"}, {str(d): str(d) for d in VECTOR_CLASSES},
                         title="vectors").extend(counts, cols)
    return ref


def test_same_bytes_as_root_writes(tmp_path: Path):
    ref = _write_like_reference(tmp_path / "ours.root")
    ours = uproot.open(tmp_path / "ours.root")["vectors"]
    assert ours.keys() == ref.keys() and ours.num_entries == ref.num_entries == len(root_check.REFERENCE_COUNTS)
    members = ("fClassName", "fParentName", "fClonesName", "fCheckSum", "fClassVersion", "fID", "fType",
               "fStreamerType", "fMaximum", "fSplitLevel", "fBasketSize", "fEntries", "fTotBytes", "fTitle")
    for name in VECTOR_CLASSES:
        a, b = ours[str(name)], ref[str(name)]
        assert type(a).__name__ == type(b).__name__ == "Model_TBranchElement_v10"
        assert {m: a.member(m) for m in members} == {m: b.member(m) for m in members}, name
        (la,), (lb,) = a.member("fLeaves"), b.member("fLeaves")
        assert type(la).__name__ == type(lb).__name__ == "Model_TLeafElement_v1"
        assert la.all_members == lb.all_members
        assert a.basket(0).data.tobytes() == b.basket(0).data.tobytes()  # the streamed vectors, byte for byte
        np.testing.assert_array_equal(a.basket(0).byte_offsets, b.basket(0).byte_offsets)
    # the TStreamerInfo records we add are the ones ROOT has for these classes
    for cls, version in (("TBranchElement", 10), ("TLeafElement", 1)):
        mine = ours.file.streamers[cls][version]
        theirs = uproot.open(REFERENCE).file.streamers[cls][version]
        assert mine.member("fCheckSum") == theirs.member("fCheckSum")
        assert [e.member("fName") for e in mine.elements] == [e.member("fName") for e in theirs.elements]


def test_many_baskets_round_trip_every_type(tmp_path: Path):
    rng = np.random.default_rng(3)
    expect: dict[str, list[np.ndarray]] = {str(d): [] for d in VECTOR_CLASSES}
    all_counts = []
    with uproot.recreate(tmp_path / "v.root") as f:
        w = VectorTreeWriter(f, "v", {"event_id": "uint32", "weight": "float64"},
                             {str(d): str(d) for d in VECTOR_CLASSES})
        for k in range(23):  # 18 non-empty extends: the basket arrays outgrow their first 10 slots
            counts = rng.integers(0, 6, size=k % 5)
            cols = {str(d): _values(d, counts.sum(), rng) for d in VECTOR_CLASSES}
            w.extend(counts, cols | {"event_id": np.arange(len(counts)) + 10 * k, "weight": counts * 0.5})
            all_counts.append(counts)
            for d in VECTOR_CLASSES:
                expect[str(d)].append(cols[str(d)])
        assert w.num_entries == sum(len(c) for c in all_counts)
    t = uproot.open(tmp_path / "v.root")["v"]
    counts = np.concatenate(all_counts)
    assert t.num_entries == len(counts) == 43 and t["int32"].num_baskets == 18
    np.testing.assert_array_equal(t["weight"].array(library="np"), counts * 0.5)
    for d, (cls, _) in VECTOR_CLASSES.items():
        branch = t[str(d)]
        assert branch.member("fClassName") == cls
        assert branch.typename == "std::vector<" + {"bool": "bool", "float32": "float", "float64": "double"}.get(
            str(d), f"{d}_t") + ">"
        arr = branch.array(library="np")
        np.testing.assert_array_equal([len(x) for x in arr], counts)
        np.testing.assert_array_equal(np.concatenate(arr), np.concatenate(expect[str(d)]))


def test_writer_rejects_bad_input(tmp_path: Path):
    with uproot.recreate(tmp_path / "bad.root") as f:
        with pytest.raises(TypeError, match="float16"):
            VectorTreeWriter(f, "t", {"event_id": "uint32"}, {"x": "float16"})
        with pytest.raises(TypeError, match="U3"):
            VectorTreeWriter(f, "t", {"event_id": "U3"}, {"x": "float32"})
        w = VectorTreeWriter(f, "t", {"event_id": "uint32"}, {"x": "float32"})
        with pytest.raises(ValueError, match="'x' needs 3 values, got 2"):
            w.extend(np.array([1, 2]), {"event_id": np.array([1, 2]), "x": np.zeros(2)})
        w.extend(np.array([], dtype=int), {})  # nothing to add is fine
        assert w.num_entries == 0


#: element type of every particles branch, as ACTS's RootParticleWriter declares them (uproot's spelling)
ACTS_TYPES = {"particle_id": "uint64_t", "particle_hash": "uint64_t", "particle_type": "int32_t",
              "process": "uint32_t", "number_of_hits": "int32_t", "outcome": "uint32_t",
              **{c: "uint32_t" for c in ("vertex_primary", "vertex_secondary", "particle", "generation",
                                         "sub_particle")},
              **{c: "float" for c in ("vx", "vy", "vz", "vt", "px", "py", "pz", "m", "q", "eta", "phi", "pt", "p",
                                      "e_loss", "total_x0", "total_l0")}}


@pytest.mark.parametrize("target", ["one.root", "folder"])
def test_particles_tree_is_acts_std_vectors(tmp_path: Path, target: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(root_write, "BATCH_EVENTS", 20)  # so that 43 events fill 3 baskets
    # every 4th event has no particles, every 3rd no hits
    events = [random_event(e, e % 3, n_particles=(e % 4) and 1 + e % 5, seed=1) for e in range(7, 50)]
    paths = root.write(events, tmp_path / target)
    t = uproot.open(paths[-1])["particles"]
    assert t["event_id"].typename == "uint32_t" and type(t["event_id"]).__name__ == "Model_TBranch_v13"
    assert {k: t[k].typename for k in ACTS_TYPES} == {k: f"std::vector<{v}>" for k, v in ACTS_TYPES.items()}
    assert t["px"].num_baskets == 3
    data = t.arrays(["event_id", *ACTS_TYPES], library="np")
    np.testing.assert_array_equal(data["event_id"], [e.event_id for e in events])
    for i, e in enumerate(events):
        p = e.particles
        assert len(data["particle_id"][i]) == len(p)
        np.testing.assert_array_equal(data["particle_id"][i], p["particle_id"].to_numpy().view(np.uint64))
        np.testing.assert_array_equal(data["particle_type"][i], p["particle_type"])
        np.testing.assert_array_equal(data["number_of_hits"][i], p["nhits"])
        for c in ("vx", "vy", "vz", "px", "py", "pz", "q"):
            np.testing.assert_array_equal(data[c][i], p[c].to_numpy().astype(np.float32))
    back = list(read_events(paths[0], events=[7, 8, 11, 30, 49]))
    for a in back:
        assert_events_equal(next(e for e in events if e.event_id == a.event_id), a)


def test_real_root_reads_our_files_like_acts(tmp_path: Path):
    """ROOT in this interpreter, or TRACKFORMERS_ROOT_PYTHON naming one that has it (e.g. /tmp/rootvenv)."""
    python = os.environ.get("TRACKFORMERS_ROOT_PYTHON")
    if not python:
        pytest.importorskip("ROOT")
    root_check.write(tmp_path)
    if python:
        run = subprocess.run([python, root_check.__file__, "check", str(tmp_path)], capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "0 failure(s)" in run.stdout
    else:
        assert root_check.check(tmp_path) == 0
