"""Hypothesis fuzzing of the readers: whatever the bytes, a reader yields valid events or raises InputError."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trackformers.errors import InputError
from trackformers.io import read_events, write_events
from trackformers.simulation import simulate_event

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EVENT = simulate_event(seed=3, pileup=0, volumes=(7, 8, 9), gun=3, event_id=1)
HEADER = "hit_id,x,y,z,volume_id,layer_id,module_id\n"
cells = st.one_of(st.integers(-2**70, 2**70).map(str), st.floats(allow_nan=True).map(repr),
                  st.text(alphabet="0123456789.-+eEnaifNI x", max_size=8))


def read_all(path: Path) -> list:
    try:
        events = list(read_events(path))
    except InputError as err:
        assert str(err).strip() and "\n" not in str(err).strip()
        return []
    for event in events:
        event.validate()
    return events


@SETTINGS
@given(rows=st.lists(st.lists(cells, min_size=7, max_size=7), max_size=6))
def test_random_hits_csv(rows: list[list[str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "event000000001-hits.csv"
        path.write_text(HEADER + "".join(",".join(r) + "\n" for r in rows))
        for event in read_all(Path(tmp) / "event000000001"):
            assert np.isfinite(event.hits[["x", "y", "z"]].to_numpy()).all()


@SETTINGS
@given(data=st.binary(max_size=600), fmt=st.sampled_from(["csv", "csv.gz", "parquet", "root"]),
       keep=st.integers(0, 4000))
def test_damaged_files(data: bytes, fmt: str, keep: int) -> None:
    """A valid file whose tail is replaced by random bytes, or random bytes alone."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ev"
        write_events([EVENT], out, format="csv" if fmt.startswith("csv") else fmt)
        target = {"csv": out / "event000000001-hits.csv", "csv.gz": out / "event000000001-hits.csv",
                  "parquet": out / "hits.parquet", "root": out / "hits.root"}[fmt]
        raw = target.read_bytes()
        if fmt == "csv.gz":
            target.unlink()
            target = target.with_suffix(".csv.gz")
            raw = gzip.compress(raw)
        target.write_bytes(raw[: min(keep, len(raw))] + data)
        read_all(out)
