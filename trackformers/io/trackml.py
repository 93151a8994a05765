"""TrackML challenge CSV events: ``<prefix>-{hits,truth,particles,cells}.csv[.gz]`` and ``detectors.csv``.

An event is addressed by its path prefix, e.g. ``train_100_events/event000001000`` (event id 1000). Columns
and units are the challenge's: positions mm, momenta GeV, charge e; floats are float32 and ids int64
(``particle_id`` is never cast to float). Two tolerances for files written by other tools: a particles file
without ``particle_type`` gets ``particle_type = 0`` (unknown), and a truth file without ``weight`` gets the
TrackML weights computed by :func:`trackformers.metrics.hit_weights` over the whole event (before any volume
selection, as the ROOT reader does; 0 when there is no particles file).

Writing uses pandas' shortest round-trip float repr, so write → read reproduces every float32 bit.
Submissions (``event_id, hit_id, track_id``) live in :mod:`trackformers.io.submission`, re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from trackformers.errors import InputError
from trackformers.events import DTYPES, HIT_COLUMNS, PARTICLE_COLUMNS, TRUTH_COLUMNS, Event
from trackformers.io.atomic import atomic_path
from trackformers.io.csvtable import read_table, require_unique
from trackformers.io.submission import check_submission, read_submission, write_submission

__all__ = ["NAME", "detect", "read", "write", "read_event", "write_event", "read_detectors",
           "read_submission", "write_submission", "check_submission", "event_id_of", "prefixes"]

NAME = "trackml"

CELL_COLUMNS: dict[str, str] = {"hit_id": "i", "ch0": "i", "ch1": "i", "value": "f"}
CELL_DTYPES: dict[str, str] = {"hit_id": "int64", "ch0": "int64", "ch1": "int64", "value": "float32"}
#: detectors.csv: module ids, centre (mm), rotation matrix, thickness and half-widths (mm), pitches (mm).
DETECTOR_COLUMNS: dict[str, str] = {
    "volume_id": "i", "layer_id": "i", "module_id": "i", "cx": "f", "cy": "f", "cz": "f",
    **{f"rot_{a}{b}": "f" for a in "xyz" for b in "uvw"},
    **{c: "f" for c in ("module_t", "module_minhu", "module_maxhu", "module_hv", "pitch_u", "pitch_v")},
}
_KINDS = ("hits", "truth", "particles", "cells")
_FILE_RE = re.compile(r"^(?P<prefix>.+)-(?P<kind>hits|truth|particles|cells)\.csv(\.gz)?$")
_EVENT_RE = re.compile(r"^event(\d+)$")


def event_id_of(prefix: str | Path) -> int:
    """Event id from a prefix or file name: ``.../event000001000`` → 1000."""
    stem = Path(prefix).name
    m = _FILE_RE.match(stem)
    stem = m["prefix"] if m else stem
    m = _EVENT_RE.match(stem)
    if not m:
        raise InputError(f"{prefix}: cannot read an event id from the name '{stem}'; "
                         "expected a name like event000001000.")
    return int(m[1])


def _file(prefix: Path, kind: str) -> Path | None:
    """The ``.csv`` or ``.csv.gz`` file of one table, None if neither exists; InputError if both do."""
    plain, gz = Path(f"{prefix}-{kind}.csv"), Path(f"{prefix}-{kind}.csv.gz")
    if plain.is_file() and gz.is_file():
        raise InputError(f"{prefix}: both {plain.name} and {gz.name} exist; expected only one of them.")
    return plain if plain.is_file() else gz if gz.is_file() else None


def prefixes(folder: Path) -> list[Path]:
    """Event prefixes of all ``*-hits.csv[.gz]`` files in ``folder``, sorted by event id then name."""
    found = {Path(str(p)[: str(p).rindex("-hits.csv")]) for p in folder.glob("*-hits.csv*")
             if _FILE_RE.match(p.name)}

    def key(p: Path) -> tuple[int, str]:
        m = _EVENT_RE.match(p.name)
        return (int(m[1]) if m else -1, p.name)

    return sorted(found, key=key)


def detect(path: Path) -> bool:
    """True for a TrackML table file, an event prefix, or a folder holding ``*-hits.csv[.gz]`` files."""
    path = Path(path)
    if path.is_dir():
        return bool(prefixes(path))
    if path.is_file():
        return bool(_FILE_RE.match(path.name))
    return _file(path, "hits") is not None


def _as_prefix(path: Path) -> Path:
    m = _FILE_RE.match(path.name)
    return path.with_name(m["prefix"]) if m and path.is_file() else path


def read(path: Path, *, volumes: Iterable[int] | None = None, events: Iterable[int] | None = None,
         cells: bool = True, **options: object) -> Iterator[Event]:
    """Yield the events of a folder (sorted by event id, lazily), a prefix or one table file.

    Args:
        volumes: keep only hits of these volume ids (truth and cells follow by hit_id).
        events: keep only these event ids.
        cells: also read ``-cells.csv`` when present.
    """
    if options:
        raise InputError(f"{path}: option(s) {', '.join(sorted(options))} are not supported by the TrackML "
                         "CSV reader; expected volumes, events or cells.")
    path = Path(path)
    wanted = None if events is None else {int(e) for e in events}
    todo = prefixes(path) if path.is_dir() else [_as_prefix(path)]
    if path.is_dir() and not todo:
        raise InputError(f"{path}: the folder holds no *-hits.csv or *-hits.csv.gz file.")
    for prefix in todo:
        if wanted is None or event_id_of(prefix) in wanted:
            yield read_event(prefix, volumes=volumes, cells=cells)


def read_event(prefix: str | Path, *, volumes: Iterable[int] | None = None, cells: bool = True) -> Event:
    """Read one event by prefix (``.../event000001000``); truth, particles and cells are optional files."""
    prefix = _as_prefix(Path(prefix))
    event_id = event_id_of(prefix)
    hits_path = _file(prefix, "hits")
    if hits_path is None:
        raise InputError(f"{prefix}-hits.csv: no such file (nor .csv.gz); expected the hits of event "
                         f"{prefix.name}.")
    hits = read_table(hits_path, HIT_COLUMNS, DTYPES)
    require_unique(hits_path, hits, "hit_id")
    truth = particles = cell_table = None
    sources = {"hits": str(hits_path)}  # each table's own file, for the messages of Event.validate
    if (p := _file(prefix, "truth")) is not None:
        sources["truth"] = str(p)
        spec = {k: v for k, v in TRUTH_COLUMNS.items() if k != "weight"}
        truth = read_table(p, spec, DTYPES, {"weight": "f"})
        require_unique(p, truth, "hit_id")
    if (p := _file(prefix, "particles")) is not None:
        sources["particles"] = str(p)
        spec = {k: v for k, v in PARTICLE_COLUMNS.items() if k != "particle_type"}
        particles = read_table(p, spec, DTYPES, {"particle_type": "i"})
        particles = _with_default(particles, "particle_type", 0, "int64", position=1)
        particles = particles[list(PARTICLE_COLUMNS) + [c for c in particles if c not in PARTICLE_COLUMNS]]
        require_unique(p, particles, "particle_id")
    if truth is not None and "weight" not in truth.columns:
        truth = _with_default(truth, "weight", 0.0, "float32", position=list(truth.columns).index("tpz") + 1)
        if particles is not None:
            from trackformers.metrics.weights import hit_weights  # lazy: io does not need metrics otherwise

            truth["weight"] = hit_weights(truth=truth, particles=particles).astype(np.float32)
    if cells and (p := _file(prefix, "cells")) is not None:
        sources["cells"] = str(p)
        cell_table = read_table(p, CELL_COLUMNS, CELL_DTYPES)
        unknown = ~cell_table["hit_id"].isin(hits["hit_id"]).to_numpy()
        if unknown.any():
            raise InputError(f"{p}: hit_id {cell_table['hit_id'].to_numpy()[unknown][0]} is not in "
                             f"{hits_path.name}; expected cells only of existing hits.")
    if volumes is not None:
        keep = hits["volume_id"].isin(list(volumes)).to_numpy()
        hits = hits[keep].reset_index(drop=True)
        ids = hits["hit_id"]
        truth = None if truth is None else truth[truth["hit_id"].isin(ids)].reset_index(drop=True)
        if cell_table is not None:
            cell_table = cell_table[cell_table["hit_id"].isin(ids)].reset_index(drop=True)
    event = Event(event_id=event_id, hits=hits, truth=truth, particles=particles, cells=cell_table,
                  source=str(hits_path), sources=sources)
    return event.validate()


def _with_default(df: pd.DataFrame, col: str, value: object, dtype: str, position: int | None = None
                  ) -> pd.DataFrame:
    if col in df.columns:
        return df
    df = df.copy()
    df.insert(len(df.columns) if position is None else position, col, pd.Series(value, index=df.index,
                                                                                   dtype=dtype))
    return df


def read_detectors(path: str | Path) -> pd.DataFrame:
    """Read ``detectors.csv[.gz]`` (a file, or a folder holding it); geometry columns as float64 (mm)."""
    path = Path(path)
    if path.is_dir():
        cands = [p for p in (path / "detectors.csv", path / "detectors.csv.gz") if p.is_file()]
        if not cands:
            raise InputError(f"{path}: the folder holds no detectors.csv or detectors.csv.gz.")
        path = cands[0]
    df = read_table(path, DETECTOR_COLUMNS, {})
    key = df[["volume_id", "layer_id", "module_id"]]
    dup = key.duplicated().to_numpy()
    if dup.any():
        v, lay, m = key.to_numpy()[dup][0]
        raise InputError(f"{path}: module (volume_id {v}, layer_id {lay}, module_id {m}) appears twice; "
                         "expected each module once.")
    return df


def write_event(event: Event, out_dir: str | Path, *, compress: bool = False) -> list[Path]:
    """Write an event's tables as ``<out_dir>/<event.name>-<table>.csv[.gz]``, each file atomically."""
    event.validate()
    out_dir = Path(out_dir)
    suffix = ".csv.gz" if compress else ".csv"
    tables = {"hits": (event.hits, list(HIT_COLUMNS)), "truth": (event.truth, list(TRUTH_COLUMNS)),
              "particles": (event.particles, list(PARTICLE_COLUMNS)),
              "cells": (event.cells, list(CELL_COLUMNS))}
    written = []
    for kind in _KINDS:
        df, first = tables[kind]
        if df is None:
            continue
        first = [c for c in first if c in df.columns]
        df = df[first + [c for c in df.columns if c not in first]]
        dtypes = CELL_DTYPES if kind == "cells" else DTYPES
        df = df.astype({c: dtypes.get(c, df[c].dtype) for c in df.columns})
        final = out_dir / f"{event.name}-{kind}{suffix}"
        with atomic_path(final) as tmp:
            # Explicit compression: the temporary name ends in .part, so "infer" would not gzip.
            df.to_csv(tmp, index=False, compression="gzip" if compress else None)
        written.append(final)
    return written


def write(events: Iterable[Event], out_dir: Path, *, compress: bool = False) -> list[Path]:
    """Write every event into ``out_dir``; returns all written paths."""
    paths: list[Path] = []
    for event in events:
        paths.extend(write_event(event, out_dir, compress=compress))
    return paths
