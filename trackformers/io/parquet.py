"""Event-partitioned Parquet (``NAME = "parquet"``): ``DIR/{hits,truth,particles,cells}.parquet``.

Each file holds the TrackML columns of one table plus a leading ``event_id`` (int64) column, one row group per
event, so plain ``pandas.read_parquet(DIR / "hits.parquet")`` (or polars) reads it without our code, and we
read one event by its row group (found from the ``event_id`` column statistics) and only the needed columns.
The event ids in write order are also stored as key-value metadata ``trackformers.events`` (JSON), so events
with no hits survive a round trip. Files from elsewhere with several events per row group also work (rows are
then filtered by ``event_id``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from trackformers.errors import InputError
from trackformers.events import Event, conform
from trackformers.io.atomic import atomic_path
from trackformers.io.magic import has_magic

NAME = "parquet"
MAGIC = b"PAR1"
TABLES = ("hits", "truth", "particles", "cells")
EVENTS_KEY = b"trackformers.events"
OPTIONS = ("truth", "cells", "columns")


def detect(path: Path) -> bool:
    """A ``.parquet``/``.pq`` file, a file with the Parquet magic bytes, or a folder with ``hits.parquet``."""
    path = Path(path)
    if path.is_dir():
        return (path / "hits.parquet").is_file()
    if not path.is_file():
        return False
    return path.suffix in (".parquet", ".pq") or has_magic(path, MAGIC)


def table_paths(path: Path) -> dict[str, Path]:
    """The existing table files of a dataset given as a folder or as its hits file."""
    path = Path(path)
    if path.is_dir():
        hits = path / "hits.parquet"
        if not hits.is_file():
            raise InputError(f"{path}: no hits.parquet in this folder; expected an event-partitioned "
                             "Parquet dataset (hits.parquet, truth.parquet, particles.parquet).")
    else:
        hits = path
    found = {"hits": hits}
    if "hits" in hits.name:
        i = hits.name.rfind("hits")
        for table in TABLES[1:]:
            cand = hits.with_name(hits.name[:i] + table + hits.name[i + 4:])
            if cand.is_file():
                found[table] = cand
    return found


class _Table:
    """One Parquet file with a map event id -> row groups (whole, or to be filtered by event_id)."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        try:
            self.file = pq.ParquetFile(path)
            meta = self.file.metadata
            self.columns = list(self.file.schema_arrow.names)
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for broken files
            raise InputError(f"{path}: cannot read as Parquet ({error_reason(err)}); expected an intact "
                             ".parquet file.") from None
        if "event_id" not in self.columns:
            raise InputError(f"{path}: missing column event_id; found {', '.join(self.columns)}.")
        kv = meta.metadata or {}
        self.order: list[int] | None = json.loads(kv[EVENTS_KEY]) if EVENTS_KEY in kv else None
        self.groups: dict[int, list[int]] = {}
        self.mixed: set[int] = set()  # events sharing a row group with others: filter rows by event_id
        col = self.columns.index("event_id")
        for rg in range(meta.num_row_groups):
            if meta.row_group(rg).num_rows == 0:
                continue
            st = meta.row_group(rg).column(col).statistics
            if st is not None and st.has_min_max and st.min == st.max:
                self.groups.setdefault(int(st.min), []).append(rg)
                continue
            ids = self._read([rg], ["event_id"])["event_id"].to_numpy()
            for eid in pd.unique(ids).tolist():
                self.groups.setdefault(int(eid), []).append(rg)
                self.mixed.add(int(eid))

    def _read(self, groups: list[int], columns: Sequence[str]) -> pd.DataFrame:
        try:
            return self.file.read_row_groups(groups, columns=list(columns)).to_pandas()
        except Exception as err:  # noqa: BLE001
            raise InputError(f"{self.path}: cannot read row group(s) {groups} ({error_reason(err)}); the file may "
                             "be corrupt.") from None

    def event_ids(self) -> list[int]:
        return list(self.order) if self.order is not None else list(self.groups)

    def read_event(self, eid: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows of one event (without the event_id column); empty with the file's columns if it has none."""
        cols = [c for c in (columns or self.columns) if c != "event_id"]
        missing = [c for c in cols if c not in self.columns]
        if missing:
            raise InputError(f"{self.path}: missing column(s) {', '.join(missing)}; found "
                             f"{', '.join(self.columns)}.")
        if eid not in self.groups:
            return self.file.schema_arrow.empty_table().select(cols).to_pandas()
        if eid in self.mixed:
            df = self._read(self.groups[eid], ["event_id", *cols])
            return df[df["event_id"].to_numpy() == eid].drop(columns="event_id").reset_index(drop=True)
        return self._read(self.groups[eid], cols)


def error_reason(err: BaseException) -> str:
    """``Type: first sentence`` of a pyarrow error (its messages run on over several sentences and lines)."""
    lines = str(err).strip().splitlines()
    first = (lines[0] if lines else "").split(". ")[0].rstrip(".")
    return f"{type(err).__name__}: {first}".rstrip(": ")


def read(path: Path, *, volumes: Sequence[int] | None = None, events: Iterable[int] | None = None,
         truth: bool = True, cells: bool = True, columns: Sequence[str] | None = None,
         **options: object) -> Iterator[Event]:
    """Yield events lazily, reading only the selected events' row groups.

    Args:
        volumes: keep hits of these volume ids only (their truth rows follow).
        events: keep these event ids only (None: all).
        truth: also read truth and particles when present (False: hits only, faster).
        cells: also read the cells table when present.
        columns: hit columns to read (default all); the TrackML hit columns are always read.
    """
    if options:
        raise InputError(f"unknown Parquet reader option(s) {', '.join(options)}; expected "
                         f"{', '.join(OPTIONS)}.")
    from trackformers.events import HIT_COLUMNS

    paths = table_paths(Path(path))
    keep = {"hits": True, "truth": truth, "particles": truth, "cells": cells}
    tables = {name: _Table(p) for name, p in paths.items() if keep[name]}
    hits_cols = None if columns is None else list(dict.fromkeys([*HIT_COLUMNS, *columns]))
    wanted = None if events is None else {int(e) for e in events}
    hit_events = set(tables["hits"].event_ids())
    for name, table in tables.items():  # rows of an event the hits table lacks: the files do not belong together
        stray = sorted(set(table.groups) - hit_events)
        if stray:
            raise InputError(f"{table.path}: rows of event {stray[0]}, which {paths['hits'].name} does not "
                             f"have; expected the {name} of the same events as the hits.")
    for eid in tables["hits"].event_ids():
        if wanted is not None and eid not in wanted:
            continue
        hits = tables["hits"].read_event(eid, hits_cols)
        tru = tables["truth"].read_event(eid) if "truth" in tables else None
        parts = tables["particles"].read_event(eid) if "particles" in tables else None
        cell = tables["cells"].read_event(eid) if "cells" in tables else None
        if tru is not None and "weight" not in tru.columns:  # as for TrackML CSV: weights from the truth
            from trackformers.metrics.weights import hit_weights

            tru = tru.assign(weight=np.zeros(len(tru), np.float32))
            if parts is not None:
                tru["weight"] = hit_weights(truth=tru, particles=parts).astype(np.float32)
        if volumes is not None:
            hits = hits[np.isin(hits["volume_id"].to_numpy(), volumes)].reset_index(drop=True)
            tru, cell = (_same_hits(t, hits) for t in (tru, cell))
        yield Event(eid, hits, tru, parts, cells=cell, source=str(paths["hits"]),
                    sources={name: str(t.path) for name, t in tables.items()}).validate()


def _same_hits(df: pd.DataFrame | None, hits: pd.DataFrame) -> pd.DataFrame | None:
    """Rows of ``df`` whose hit_id is among ``hits`` (truth and cells follow a volume selection)."""
    if df is None:
        return None
    return df[np.isin(df["hit_id"].to_numpy(), hits["hit_id"].to_numpy())].reset_index(drop=True)


def _frame(event: Event, name: str) -> pd.DataFrame | None:
    df = getattr(event, name)
    if df is None:
        return None
    df = conform(df.reset_index(drop=True))
    ids = pd.DataFrame({"event_id": np.full(len(df), event.event_id, dtype=np.int64)})
    return pd.concat([ids, df], axis=1)


def write(events: Iterable[Event], out: Path) -> list[Path]:
    """Write ``events`` into folder ``out`` (hits/truth/particles/cells.parquet, one row group per event);
    returns the written paths. Files appear only when complete (atomic rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    writers: dict[str, pq.ParquetWriter] = {}
    finals: dict[str, Path] = {}
    order: list[int] = []
    seen: set[int] = set()
    with contextlib.ExitStack() as stack:
        for event in events:
            if event.event_id in seen:
                raise InputError(f"{event.source}: event id {event.event_id} appears twice; "
                                 "expected unique ids.")
            seen.add(event.event_id)
            for name in TABLES:
                df = _frame(event, name)
                if order and (df is None) != (name not in writers):
                    raise InputError(f"{event.source} (event {event.event_id}): table {name} is "
                                     f"{'missing' if df is None else 'present'} unlike in the first event; "
                                     "one dataset holds events of one kind.")
                if df is None:
                    continue
                if name not in writers:
                    finals[name] = out / f"{name}.parquet"
                    tmp = stack.enter_context(atomic_path(finals[name]))
                    schema = pa.Schema.from_pandas(df, preserve_index=False)
                    writers[name] = stack.enter_context(pq.ParquetWriter(tmp, schema))
                w = writers[name]
                if list(df.columns) != w.schema.names:  # from_pandas would silently drop extra columns
                    raise InputError(f"{event.source} (event {event.event_id}, {name}): columns "
                                     f"{', '.join(map(str, df.columns[1:]))} differ from the first event's "
                                     f"{', '.join(w.schema.names[1:])}; one dataset holds one schema.")
                try:
                    table = pa.Table.from_pandas(df, schema=w.schema, preserve_index=False)
                except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, ValueError) as err:
                    raise InputError(f"{event.source} (event {event.event_id}, {name}): columns differ from "
                                     f"the first event's ({error_reason(err)}).") from None
                w.write_table(table, row_group_size=max(len(table), 1))
            order.append(event.event_id)
        if "hits" not in writers:  # no events: an empty but valid dataset
            finals["hits"] = out / "hits.parquet"
            schema = pa.schema([("event_id", pa.int64())])
            writers["hits"] = stack.enter_context(pq.ParquetWriter(stack.enter_context(
                atomic_path(finals["hits"])), schema))
        for w in writers.values():
            w.add_key_value_metadata({EVENTS_KEY.decode(): json.dumps(order)})
    return [finals[n] for n in TABLES if n in finals]
