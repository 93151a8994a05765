"""Our event-partitioned Parquet read by polars alone (no trackformers code on the reading side)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared builders beside this file
from make_io_events import random_event  # noqa: E402

from trackformers.io import parquet

SIZES = [(3, 101), (5, 0), (1000, 257), (7, 13), (2, 1), (11, 53)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    events = [random_event(e, n, n_particles=0 if e == 2 else 7) for e, n in SIZES]
    folder = tmp_path_factory.mktemp("pq") / "ds"
    parquet.write(iter(events), folder)
    return folder, events


def _assert_table_equal(df: pl.DataFrame, table, columns) -> None:  # noqa: ANN001 - pandas table of an Event
    assert df.columns == list(columns)
    assert df.height == len(table)
    for c in columns:
        want = table[c].to_numpy()
        got = df[c].to_numpy()
        assert got.dtype == want.dtype, c  # int64 / float32 as written
        np.testing.assert_array_equal(got, want, err_msg=c)


def test_polars_reads_whole_tables(dataset):
    folder, events = dataset
    for name in ("hits", "truth", "particles"):
        df = pl.read_parquet(folder / f"{name}.parquet")
        tables = [getattr(e, name) for e in events]
        assert df.columns[0] == "event_id" and df.schema["event_id"] == pl.Int64
        assert df.height == sum(len(t) for t in tables)
        np.testing.assert_array_equal(df["event_id"].to_numpy(),
                                      np.repeat([e.event_id for e in events], [len(t) for t in tables]))
        for e, t in zip(events, tables):
            _assert_table_equal(df.filter(pl.col("event_id") == e.event_id).drop("event_id"), t, t.columns)


@pytest.mark.parametrize("wanted", [[1000], [5], [7, 3], [11, 2, 1000]])
def test_polars_lazy_selection_of_events_and_columns(dataset, wanted):
    folder, events = dataset
    cols = ["hit_id", "x", "volume_id"]
    df = (pl.scan_parquet(folder / "hits.parquet")
          .filter(pl.col("event_id").is_in(wanted))
          .select(["event_id", *cols])
          .collect())
    for e in events:  # rows keep the file order: events in write order, hits in event order
        part = df.filter(pl.col("event_id") == e.event_id).drop("event_id")
        if e.event_id in wanted:
            _assert_table_equal(part, e.hits, cols)
        else:
            assert part.height == 0
    assert df.height == sum(len(e.hits) for e in events if e.event_id in wanted)


def test_polars_joins_hits_truth_particles(dataset):
    folder, events = dataset
    hits = pl.scan_parquet(folder / "hits.parquet")
    truth = pl.scan_parquet(folder / "truth.parquet")
    particles = pl.scan_parquet(folder / "particles.parquet")
    joined = (hits.filter(pl.col("event_id") == 11)
              .join(truth, on=["event_id", "hit_id"], how="left", maintain_order="left")
              .join(particles.select(["event_id", "particle_id", "particle_type"]),
                    on=["event_id", "particle_id"], how="left", maintain_order="left")
              .collect())
    e = events[-1]
    ref = e.hits.merge(e.truth, on="hit_id").merge(e.particles[["particle_id", "particle_type"]],
                                                   on="particle_id", how="left")
    assert joined.height == len(ref) == 53
    np.testing.assert_array_equal(joined["particle_id"].to_numpy(), ref["particle_id"].to_numpy())
    noise = ref["particle_id"].to_numpy() == 0  # noise hits have no particle row
    assert joined["particle_type"].null_count() == noise.sum()
    np.testing.assert_array_equal(joined["particle_type"].to_numpy()[~noise],
                                  ref["particle_type"].to_numpy()[~noise])
