"""The event model: hits, optional truth, optional particles (pandas DataFrames), validated once.

Columns follow the TrackML challenge exactly. Units: x, y, z, tx, ty, tz and vx, vy, vz in mm;
tpx, tpy, tpz and px, py, pz in GeV; q in units of e. ``particle_id`` is int64 and 0 means noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trackformers.errors import InputError

#: Required columns and their dtype kind ('i' integer, 'f' float) per table.
HIT_COLUMNS: dict[str, str] = {
    "hit_id": "i", "x": "f", "y": "f", "z": "f", "volume_id": "i", "layer_id": "i", "module_id": "i",
}
TRUTH_COLUMNS: dict[str, str] = {
    "hit_id": "i", "particle_id": "i", "tx": "f", "ty": "f", "tz": "f",
    "tpx": "f", "tpy": "f", "tpz": "f", "weight": "f",
}
PARTICLE_COLUMNS: dict[str, str] = {
    "particle_id": "i", "particle_type": "i", "vx": "f", "vy": "f", "vz": "f",
    "px": "f", "py": "f", "pz": "f", "q": "i", "nhits": "i",
}
#: TrackML on-disk dtypes, used by writers and by :func:`conform`.
DTYPES: dict[str, str] = {
    "hit_id": "int64", "x": "float32", "y": "float32", "z": "float32", "volume_id": "int64",
    "layer_id": "int64", "module_id": "int64", "particle_id": "int64", "tx": "float32", "ty": "float32",
    "tz": "float32", "tpx": "float32", "tpy": "float32", "tpz": "float32", "weight": "float32",
    "particle_type": "int64", "vx": "float32", "vy": "float32", "vz": "float32", "px": "float32",
    "py": "float32", "pz": "float32", "q": "int64", "nhits": "int64",
}
#: Absurd-value guard: no tracker hit lies farther than this from the origin (mm).
MAX_ABS_COORD_MM = 1.0e5


@dataclass
class Event:
    """One collision event.

    Attributes:
        event_id: non-negative integer id (TrackML ``event000001000`` has id 1000).
        hits: one row per hit, columns :data:`HIT_COLUMNS` (+ optional cell features), positions in mm.
        truth: one row per hit (same ``hit_id`` set), columns :data:`TRUTH_COLUMNS`; None for real data.
        particles: one row per particle, columns :data:`PARTICLE_COLUMNS`; None when unknown.
        cells: optional TrackML cells table (``hit_id, ch0, ch1, value``).
        source: where the event came from (file path or ``simulator``), used in error messages.
        sources: the file of each table read from its own file (``{"truth": ".../event000000001-truth.csv"}``),
            so that a message about a table names that file; tables not listed come from ``source``.
    """

    event_id: int
    hits: pd.DataFrame
    truth: pd.DataFrame | None = None
    particles: pd.DataFrame | None = None
    cells: pd.DataFrame | None = None
    source: str = field(default="<memory>")
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """TrackML file stem, e.g. ``event000001000``."""
        return f"event{self.event_id:09d}"

    def __len__(self) -> int:
        return len(self.hits)

    def validate(self) -> Event:
        """Check the tables once (see :func:`validate`); returns self for chaining."""
        validate(self)
        return self


def _where(event: Event, table: str) -> str:
    return f"{event.sources.get(table, event.source)} (event {event.event_id}, {table})"


def _check_table(event: Event, table: str, df: pd.DataFrame, columns: dict[str, str]) -> None:
    where = _where(event, table)
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"{where}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns))}."
        )
    for col, kind in columns.items():
        dtype = df[col].dtype
        ok = (dtype.kind in "iu") if kind == "i" else (dtype.kind in "fiu")
        if not ok:
            sample = df[col].iloc[0] if len(df) else ""
            want = "integer" if kind == "i" else "numeric"
            raise InputError(f"{where}: column '{col}' has dtype {dtype} (e.g. {sample!r}); expected {want}.")
        if kind == "f" and len(df):
            values = df[col].to_numpy()
            bad = ~np.isfinite(values)
            if bad.any():
                i = int(np.argmax(bad))
                raise InputError(f"{where}: column '{col}' has non-finite value {values[i]} at row {i}; "
                                 "expected finite numbers.")


def validate(event: Event) -> None:
    """Validate an event's tables; raise :class:`InputError` naming event, table, column and value.

    Checks: required columns present, integer/numeric dtypes, finite floats, coordinates within
    ``MAX_ABS_COORD_MM``, unique ``hit_id``, every truth ``hit_id`` is a hit, unique ``particle_id``.
    """
    _check_table(event, "hits", event.hits, HIT_COLUMNS)
    hits = event.hits
    ids = hits["hit_id"].to_numpy()
    dup = pd.Index(ids).duplicated()
    if dup.any():
        raise InputError(f"{_where(event, 'hits')}: duplicate hit_id {ids[np.argmax(dup)]}; "
                         "expected unique hit ids.")
    for col in ("x", "y", "z"):
        v = hits[col].to_numpy()
        far = np.abs(v) > MAX_ABS_COORD_MM
        if far.any():
            raise InputError(f"{_where(event, 'hits')}: column '{col}' has value {v[np.argmax(far)]} mm; "
                             f"expected |{col}| <= {MAX_ABS_COORD_MM:g} mm.")
    if event.truth is not None:
        _check_table(event, "truth", event.truth, TRUTH_COLUMNS)
        tids = event.truth["hit_id"].to_numpy()
        unknown = ~np.isin(tids, ids)
        if unknown.any():
            hits_source = event.sources.get("hits", event.source)
            # name the hits file too when the truth has its own (the message starts with the truth file)
            of = f" ({Path(hits_source).name})" if event.sources.get("truth", event.source) != hits_source else ""
            raise InputError(f"{_where(event, 'truth')}: hit_id {tids[np.argmax(unknown)]} is not in hits{of}; "
                             "expected truth only for existing hits.")
        if len(tids) != len(ids):
            raise InputError(f"{_where(event, 'truth')}: {len(tids)} truth rows for {len(ids)} hits; "
                             "expected exactly one truth row per hit.")
        tdup = pd.Index(tids).duplicated()
        if tdup.any():
            raise InputError(f"{_where(event, 'truth')}: duplicate hit_id {tids[np.argmax(tdup)]}; "
                             "expected one truth row per hit.")
    if event.particles is not None:
        _check_table(event, "particles", event.particles, PARTICLE_COLUMNS)
        pids = event.particles["particle_id"].to_numpy()
        pdup = pd.Index(pids).duplicated()
        if pdup.any():
            raise InputError(f"{_where(event, 'particles')}: duplicate particle_id {pids[np.argmax(pdup)]}; "
                             "expected unique particle ids.")


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Cast known columns to the TrackML on-disk dtypes (float32 / int64); others are kept as they are."""
    casts = {c: DTYPES[c] for c in df.columns if c in DTYPES and str(df[c].dtype) != DTYPES[c]}
    return df.astype(casts) if casts else df
