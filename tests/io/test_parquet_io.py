"""Event-partitioned Parquet: round trip, plain-pandas readability, row-group selection, bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared builders beside this file
from make_io_events import assert_events_equal, random_event  # noqa: E402

from trackformers.errors import InputError
from trackformers.io import detect, parquet, read_events

SIZES = [(3, 101), (5, 0), (1000, 257), (7, 13), (2, 1)]


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, list]:
    events = [random_event(e, n) for e, n in SIZES]
    paths = parquet.write(iter(events), tmp_path / "ds")
    assert [p.name for p in paths] == ["hits.parquet", "truth.parquet", "particles.parquet"]
    return tmp_path / "ds", events


def test_round_trip_is_lossless_including_empty_events(dataset):
    folder, events = dataset
    assert detect(folder) == "parquet" and detect(folder / "hits.parquet") == "parquet"
    for path in (folder, folder / "hits.parquet"):
        back = list(read_events(path))
        assert [e.event_id for e in back] == [e for e, _ in SIZES]
        for a, b in zip(events, back):
            assert_events_equal(a, b)


def test_plain_pandas_reads_it_and_one_row_group_per_event(dataset):
    folder, events = dataset
    hits = pd.read_parquet(folder / "hits.parquet")
    assert list(hits.columns[:2]) == ["event_id", "hit_id"] and len(hits) == sum(n for _, n in SIZES)
    sel = hits[hits["event_id"] == 1000].drop(columns="event_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(sel, events[2].hits)
    meta = pq.ParquetFile(folder / "truth.parquet").metadata
    assert meta.num_row_groups == len(SIZES)
    assert [meta.row_group(i).num_rows for i in range(len(SIZES))] == [n for _, n in SIZES]
    filtered = pd.read_parquet(folder / "particles.parquet", filters=[("event_id", "==", 7)])
    assert len(filtered) == len(events[3].particles)


def test_selection_of_events_columns_volumes(dataset):
    folder, events = dataset
    (e7,) = read_events(folder, events=[7], truth=False)
    assert e7.truth is None and e7.particles is None
    pd.testing.assert_frame_equal(e7.hits, events[3].hits)
    (e3,) = read_events(folder, events={3}, volumes=[7, 8, 9])
    keep = events[0].hits["volume_id"].isin([7, 8, 9]).to_numpy()
    pd.testing.assert_frame_equal(e3.hits, events[0].hits[keep].reset_index(drop=True))
    pd.testing.assert_frame_equal(e3.truth, events[0].truth[keep].reset_index(drop=True))
    with pytest.raises(InputError, match="missing column.*energy"):
        list(read_events(folder, columns=["energy"]))


def test_cells_table_round_trips_and_follows_volumes(tmp_path: Path):
    ev = random_event(4, 29)
    rng = np.random.default_rng(0)
    ids = np.repeat(ev.hits["hit_id"].to_numpy(), 2)
    ev.cells = pd.DataFrame({"hit_id": ids, "ch0": rng.integers(0, 1000, len(ids)),
                             "ch1": rng.integers(0, 1000, len(ids)), "value": rng.random(len(ids))})
    paths = parquet.write([ev], tmp_path / "c")
    assert paths[-1].name == "cells.parquet"
    (back,) = read_events(tmp_path / "c")
    pd.testing.assert_frame_equal(back.cells, ev.cells)
    (sel,) = read_events(tmp_path / "c", volumes=[8])
    assert set(sel.cells["hit_id"]) == set(sel.hits["hit_id"])
    (none,) = read_events(tmp_path / "c", cells=False)
    assert none.cells is None


def test_foreign_file_with_many_events_per_row_group(tmp_path: Path):
    events = [random_event(e, n, truth=False, particles=False) for e, n in [(4, 17), (2, 23), (9, 5)]]
    table = pd.concat([e.hits.assign(event_id=e.event_id) for e in events], ignore_index=True)
    table.to_parquet(tmp_path / "hits.parquet", index=False)  # one row group, no metadata
    back = {e.event_id: e for e in read_events(tmp_path)}
    assert sorted(back) == [2, 4, 9]
    for e in events:
        pd.testing.assert_frame_equal(back[e.event_id].hits[e.hits.columns], e.hits)


def test_bad_inputs_and_atomic_output(tmp_path: Path, dataset):
    folder, _ = dataset
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "hits.parquet").write_bytes((folder / "hits.parquet").read_bytes()[:200])
    with pytest.raises(InputError, match="cannot read as Parquet"):
        list(read_events(bad))
    pd.DataFrame({"x": [1.0]}).to_parquet(bad / "hits.parquet")
    with pytest.raises(InputError, match="missing column event_id; found x"):
        list(read_events(bad / "hits.parquet"))
    with pytest.raises(InputError, match="event id.* 8 not found"):
        list(read_events(folder, events=[8]))
    a, b = random_event(1, 10), random_event(2, 10, truth=False)
    with pytest.raises(InputError, match="table truth is missing"):
        parquet.write([a, b], tmp_path / "half")
    assert not any(p.is_file() for p in (tmp_path / "half").rglob("*"))
    c = random_event(3, 10)
    c.hits["extra"] = np.arange(10)
    with pytest.raises(InputError, match="module_id, extra differ from"):
        parquet.write([a, c], tmp_path / "half")
    assert not any(p.is_file() for p in (tmp_path / "half").rglob("*"))


def test_a_bad_truth_table_is_named_by_its_own_file(dataset):
    folder, events = dataset
    truth = pd.read_parquet(folder / "truth.parquet")
    truth.loc[0, "hit_id"] = 10**9  # not a hit of its event
    truth.to_parquet(folder / "truth.parquet")
    with pytest.raises(InputError) as info:
        list(read_events(folder))
    assert str(info.value).startswith(f"{folder / 'truth.parquet'} (event {events[0].event_id}, truth): hit_id "
                                      f"{10**9} is not in hits (hits.parquet)")
