"""TrackML CSV reader/writer: lossless round trips (.csv, .csv.gz), folders, volumes, and every bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackformers import Event, InputError
from trackformers.io import read_events, trackml, write_events
from trackformers.io.submission import check_submission, read_submission, write_submission
from trackformers.metrics import hit_weights


def make_event(event_id: int = 1000, n_particles: int = 7, hits_per: int = 5, n_noise: int = 4,
               seed: int = 0) -> Event:
    """A small synthetic event with awkward values: large particle ids, random float32 positions."""
    rng = np.random.default_rng(seed)
    n = n_particles * hits_per + n_noise
    pids = np.int64(4_503_599_644_147_712) + np.arange(1, n_particles + 1, dtype=np.int64) * 2**20 + 1
    pid_h = np.concatenate([np.repeat(pids, hits_per), np.zeros(n_noise, np.int64)])
    hit_id = rng.permutation(np.arange(1, n + 1, dtype=np.int64))

    def f32(size: int, scale: float = 1000.0) -> np.ndarray:
        return (rng.normal(size=size) * scale).astype(np.float32)

    hits = pd.DataFrame({"hit_id": hit_id, "x": f32(n), "y": f32(n), "z": f32(n),
                         "volume_id": rng.choice([7, 8, 9, 12], n).astype(np.int64),
                         "layer_id": rng.integers(2, 14, n), "module_id": rng.integers(1, 3000, n)})
    truth = pd.DataFrame({"hit_id": hit_id, "particle_id": pid_h, "tx": hits.x, "ty": hits.y, "tz": hits.z,
                          "tpx": f32(n, 1), "tpy": f32(n, 1), "tpz": f32(n, 3),
                          "weight": rng.random(n).astype(np.float32) * (pid_h != 0)})
    particles = pd.DataFrame({"particle_id": pids, "particle_type": rng.choice([11, -13, 211], n_particles),
                              "vx": f32(n_particles, 0.01), "vy": f32(n_particles, 0.01),
                              "vz": f32(n_particles, 50), "px": f32(n_particles, 1),
                              "py": f32(n_particles, 1), "pz": f32(n_particles, 2),
                              "q": rng.choice([-1, 1], n_particles), "nhits": np.full(n_particles, hits_per)})
    cells = pd.DataFrame({"hit_id": np.repeat(hit_id, 2), "ch0": rng.integers(0, 1000, 2 * n),
                          "ch1": rng.integers(0, 1000, 2 * n), "value": rng.random(2 * n).astype(np.float32)})
    return Event(event_id=event_id, hits=hits, truth=truth, particles=particles, cells=cells).validate()


def assert_same(a: Event, b: Event) -> None:
    assert a.event_id == b.event_id
    for name in ("hits", "truth", "particles", "cells"):
        pd.testing.assert_frame_equal(getattr(a, name).reset_index(drop=True),
                                      getattr(b, name).reset_index(drop=True), check_exact=True)


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_is_lossless(tmp_path: Path, compress: bool):
    event = make_event()
    paths = trackml.write_event(event, tmp_path, compress=compress)
    suffix = ".csv.gz" if compress else ".csv"
    assert sorted(p.name for p in paths) == sorted(f"event000001000-{k}{suffix}"
                                                   for k in ("hits", "truth", "particles", "cells"))
    if compress:
        assert gzip.open(paths[0]).read(6) == b"hit_id"
    back = trackml.read_event(tmp_path / "event000001000")
    assert_same(event, back)
    assert back.hits["x"].dtype == np.float32 and back.truth["particle_id"].dtype == np.int64
    assert back.source.endswith(f"event000001000-hits{suffix}")
    assert not list(tmp_path.glob("*.part"))


def test_float32_extremes_survive(tmp_path: Path):
    event = make_event()
    x = event.hits["x"].to_numpy().copy()
    x[:4] = np.array([np.float32(1e-30), np.nextafter(np.float32(1), np.float32(2)), -0.0, 99999.99],
                     dtype=np.float32)
    event.hits["x"] = x
    trackml.write_event(event, tmp_path)
    back = trackml.read_event(tmp_path / "event000001000")
    np.testing.assert_array_equal(back.hits["x"].to_numpy().view(np.int32), x.view(np.int32))


def test_folder_reads_sorted_and_lazily(tmp_path: Path):
    for eid in (30, 2, 1000):
        trackml.write_event(make_event(event_id=eid, seed=eid), tmp_path)
    (tmp_path / "notes.txt").write_text("not an event")
    assert trackml.detect(tmp_path) and trackml.detect(tmp_path / "event000000002")
    assert trackml.detect(tmp_path / "event000000002-hits.csv") and not trackml.detect(tmp_path / "notes.txt")
    it = trackml.read(tmp_path)
    assert next(it).event_id == 2
    (tmp_path / "event000001000-hits.csv").write_text("garbage")  # not read yet: laziness
    assert next(it).event_id == 30
    with pytest.raises(InputError, match="event000001000-hits.csv"):
        next(it)
    assert [e.event_id for e in read_events(tmp_path, events=[30])] == [30]


def test_volume_selection_filters_hits_truth_cells(tmp_path: Path):
    event = make_event()
    write_events([event], tmp_path)
    (sel,) = read_events(tmp_path, volumes=[7, 8])
    keep = event.hits["volume_id"].isin([7, 8])
    assert len(sel.hits) == int(keep.sum()) > 0
    assert set(sel.truth["hit_id"]) == set(sel.hits["hit_id"]) == set(sel.cells["hit_id"])
    pd.testing.assert_frame_equal(sel.particles, event.particles)


def test_optional_tables_and_challenge_particles(tmp_path: Path):
    event = make_event()
    event.truth = event.truth.drop(columns="weight")
    event.particles = event.particles.drop(columns="particle_type")
    event.hits.to_csv(tmp_path / "event000000005-hits.csv", index=False)
    event.truth.to_csv(tmp_path / "event000000005-truth.csv", index=False)
    event.particles.to_csv(tmp_path / "event000000005-particles.csv", index=False)
    back = trackml.read_event(tmp_path / "event000000005-truth.csv", volumes=[7])
    assert back.event_id == 5 and back.cells is None
    assert (back.particles["particle_type"] == 0).all()
    assert list(back.particles.columns)[:2] == ["particle_id", "particle_type"]
    # missing weights: TrackML weights of the whole event, before the volume selection
    whole = hit_weights(truth=event.truth, particles=event.particles.assign(particle_type=0))
    assert whole.sum() == pytest.approx(1.0)
    expected = pd.Series(whole, index=event.truth["hit_id"]).loc[back.truth["hit_id"]].to_numpy(np.float32)
    np.testing.assert_array_equal(back.truth["weight"].to_numpy(), expected)
    assert list(back.truth.columns) == list(event.truth.columns) + ["weight"]
    (tmp_path / "event000000005-particles.csv").unlink()
    assert (trackml.read_event(tmp_path / "event000000005").truth["weight"] == 0).all()
    (tmp_path / "event000000005-truth.csv").unlink()
    assert trackml.read_event(tmp_path / "event000000005").truth is None


def test_detectors(tmp_path: Path):
    rows = {c: [1.5, 2.5] for c in trackml.DETECTOR_COLUMNS}
    rows.update(volume_id=[7, 7], layer_id=[2, 2], module_id=[1, 2])
    pd.DataFrame(rows).to_csv(tmp_path / "detectors.csv", index=False)
    det = trackml.read_detectors(tmp_path)
    assert len(det) == 2 and det["volume_id"].dtype == np.int64 and det["rot_zw"].iloc[1] == 2.5
    rows.update(module_id=[1, 1])
    pd.DataFrame(rows).to_csv(tmp_path / "detectors.csv", index=False)
    with pytest.raises(InputError, match="module_id 1\\) appears twice"):
        trackml.read_detectors(tmp_path / "detectors.csv")


def test_submission_round_trip_and_checks(tmp_path: Path):
    event = make_event()
    sub = pd.DataFrame({"hit_id": event.hits["hit_id"], "track_id": np.arange(len(event.hits)) % 5})
    path = write_submission(sub, tmp_path / "event000001000-submission.csv.gz", event_id=1000)
    back = read_submission(path)
    assert list(back.columns) == ["event_id", "hit_id", "track_id"] and (back.event_id == 1000).all()
    np.testing.assert_array_equal(back["track_id"], sub["track_id"])
    check_submission(event, back)
    with pytest.raises(InputError, match=f"hit_id {sub.hit_id.iloc[3]} is assigned twice"):
        check_submission(event, pd.concat([back, back.iloc[[3]]]))
    with pytest.raises(InputError, match=f"hit_id {sub.hit_id.iloc[0]} has no track"):
        check_submission(event, back.iloc[1:])
    with pytest.raises(InputError, match="hit_id 999999 is not a hit"):
        check_submission(event, pd.concat([back, pd.DataFrame({"event_id": [1000], "hit_id": [999999],
                                                               "track_id": [0]})]))
    plain = tmp_path / "all.csv"
    plain.write_text("hit_id,track_id\n1,2\n")
    with pytest.raises(InputError, match="no event_id column"):
        read_submission(plain)
    assert read_submission(plain, event_id=7)["event_id"].tolist() == [7]
    assert len(read_submission(path, event_id=1000)) == len(sub)
    with pytest.raises(InputError, match="no rows with event_id 5 \\(the file holds event_id 1000\\)"):
        read_submission(path, event_id=5)


def _write_hits(tmp_path: Path, text: str | bytes, name: str = "event000000001-hits.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return tmp_path / "event000000001"


HEADER = "hit_id,x,y,z,volume_id,layer_id,module_id\n"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (HEADER + "1,0.5,1,2,7,2,1\n2,abc,1,2,7,2,1\n",
         "column 'x' has value 'abc' on line 3; expected a number"),
        (HEADER + "1,0.5,1,2,7,2,1\n2,,1,2,7,2,1\n", "column 'x' has missing/NaN value on line 3"),
        (HEADER + "1,0.5,1,2,7,2,1\n1,0.5,1,2,7,2,1\n", "duplicate hit_id 1 on line 3"),
        (HEADER + "1,0.5,1,2,7.5,2,1\n", "column 'volume_id' has value 7.5 on line 2; expected an integer"),
        ("hit_id,x,y,volume_id,layer_id,module_id\n1,2,3,4,5,6\n", "missing column(s) z"),
        ("", "the file is empty"),
        (HEADER + "1,0.5,1,2,7,2,1,9,9\n2,0.5\n", "cannot be read as CSV"),
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00garbage", "event000000001-hits.csv"),
        (HEADER + "1,1e39,1,2,7,2,1\n", "column 'x' has value inf on line 2 after conversion to float32"),
        # beyond int64 one way or the other, above 2**64 too (pandas keeps those as Python ints): one wording
        (HEADER + "1,0.5,1,2,7,2,1\n18446744073709551621,0.5,1,2,7,2,1\n",
         "column 'hit_id' has value 18446744073709551621 on line 3; expected an integer from -2**63 to 2**63 - 1"),
        (HEADER + "9223372036854775809,0.5,1,2,7,2,1\n",
         "column 'hit_id' has value 9223372036854775809 on line 2; expected an integer from -2**63 to 2**63 - 1"),
        (HEADER + "1,0.5,1,2,7,2,1\n-9223372036854775809,0.5,1,2,7,2,1\n",
         "column 'hit_id' has value -9223372036854775809 on line 3; expected an integer from -2**63 to 2**63 - 1"),
    ],
)
def test_bad_hits_files(tmp_path: Path, content, needle):
    prefix = _write_hits(tmp_path, content)
    with pytest.raises(InputError) as info:
        trackml.read_event(prefix)
    assert needle in str(info.value)
    assert "event000000001-hits.csv" in str(info.value)


@pytest.mark.parametrize("data", [b"not gzip at all", gzip.compress(HEADER.encode() * 50)[:40]])
def test_bad_gzip(tmp_path: Path, data: bytes):
    prefix = _write_hits(tmp_path, data, name="event000000001-hits.csv.gz")
    with pytest.raises(InputError, match="event000000001-hits.csv.gz: cannot be read as CSV"):
        trackml.read_event(prefix)


def test_missing_event_and_bad_names(tmp_path: Path):
    with pytest.raises(InputError, match="no such file"):
        trackml.read_event(tmp_path / "event000000009")
    with pytest.raises(InputError, match="expected a name like event000001000"):
        trackml.read_event(tmp_path / "run9")
    _write_hits(tmp_path, HEADER + "1,0.5,1,2,7,2,1\n")
    gz = gzip.compress((HEADER + "1,0.5,1,2,7,2,1\n").encode())
    _write_hits(tmp_path, gz, "event000000001-hits.csv.gz")
    with pytest.raises(InputError, match="expected only one of them"):
        trackml.read_event(tmp_path / "event000000001")
    with pytest.raises(InputError, match="not supported by the TrackML CSV reader"):
        list(trackml.read(tmp_path / "event000000001", smear=True))


def test_truth_of_unknown_hit(tmp_path: Path):
    event = make_event()
    trackml.write_event(event, tmp_path)
    truth = event.truth.copy()
    truth.loc[0, "hit_id"] = 123456
    truth.to_csv(tmp_path / "event000001000-truth.csv", index=False)
    with pytest.raises(InputError) as info:
        trackml.read_event(tmp_path / "event000001000")
    # the truth file is the one at fault: the message starts with it, not with the hits file
    assert str(info.value).startswith(f"{tmp_path / 'event000001000-truth.csv'} (event 1000, truth): hit_id 123456 "
                                      "is not in hits (event000001000-hits.csv)")
