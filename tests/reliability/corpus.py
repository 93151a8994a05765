"""A generator of malformed (and valid-but-odd) event inputs, made from one valid simulated event.

Every case is a folder holding one input in one format (TrackML CSV, CSV.gz, ACTS ROOT, Parquet) plus an
expectation: ``"error"`` (the CLI must exit non-zero with one clear sentence and leave no output) or
``"ok"`` (valid but odd, e.g. an empty event: the CLI must succeed with a correct result). Mutations are
applied to the raw tables of each format (CSV files, ROOT trees, Parquet files), bypassing our writers,
so the readers see what another chain could have written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HIT_FLOATS = ("x", "y", "z")
TRUTH_FLOATS = ("tx", "ty", "tz", "tpx", "tpy", "tpz")
PARTICLE_FLOATS = ("vx", "vy", "vz", "px", "py", "pz")
ROOT_HIT_FLOATS = ("x", "y", "z", "tx", "ty", "tz", "tpx", "tpy", "tpz")


@dataclass(frozen=True)
class Case:
    """One corpus entry: ``input`` is what the CLI is given; ``expect`` is ``"error"`` or ``"ok"``."""

    name: str
    input: Path
    expect: str


Mutation = Callable[[dict[str, pd.DataFrame]], None]


def _drop(table: str, col: str) -> Mutation:
    return lambda t: t.__setitem__(table, t[table].drop(columns=col))


def _rename(table: str, col: str) -> Mutation:
    return lambda t: t.__setitem__(table, t[table].rename(columns={col: f"{col}_renamed"}))


def _set(table: str, col: str, value: object, row: int = 1) -> Mutation:
    def apply(t: dict[str, pd.DataFrame]) -> None:
        df = t[table].copy()
        if isinstance(value, str):  # a text column, as a chain that wrote ids as strings would have
            df[col] = df[col].astype(str)
        elif isinstance(value, float) and df[col].dtype.kind in "iu":
            df[col] = df[col].astype("float64")
        df.loc[df.index[row], col] = value
        t[table] = df
    return apply


def _dup_hit_id(table: str) -> Mutation:
    return _set_from(table, "hit_id", 0, 1)


def _set_from(table: str, col: str, src: int, dst: int) -> Mutation:
    def apply(t: dict[str, pd.DataFrame]) -> None:
        df = t[table].copy()
        df.loc[df.index[dst], col] = df[col].iloc[src]
        t[table] = df
    return apply


def _empty(t: dict[str, pd.DataFrame]) -> None:
    for name in t:
        t[name] = t[name].iloc[:0]


def table_mutations(columns: dict[str, list[str]], floats: dict[str, tuple[str, ...]],
                    strings: bool) -> Iterator[tuple[str, Mutation, str]]:
    """(name, mutation, expectation) for every column of every table: drop, rename, wrong dtype,
    NaN, ±inf, absurd coordinates; plus duplicate hit ids, truth for unknown hits and an empty event."""
    for table, cols in columns.items():
        for col in cols:
            if col == "event_id":
                continue
            # TrackML weights can be recomputed from the hits, so a truth table without them is valid.
            missing_ok = col == "weight"
            yield f"{table}-drop-{col}", _drop(table, col), "ok" if missing_ok else "error"
            yield f"{table}-rename-{col}", _rename(table, col), "ok" if missing_ok else "error"
            if strings:
                yield f"{table}-string-{col}", _set(table, col, "abc"), "error"
            else:
                yield f"{table}-fraction-{col}", _set(table, col, 0.5), "error" if col in (
                    "hit_id", "particle_id", "event_id", "volume_id", "layer_id", "module_id", "sensitive_id",
                    "geometry_id", "index") else "skip"
        for col in floats.get(table, ()):
            yield f"{table}-nan-{col}", _set(table, col, float("nan")), "error"
            yield f"{table}-posinf-{col}", _set(table, col, float("inf")), "error"
            yield f"{table}-neginf-{col}", _set(table, col, float("-inf")), "error"
            if col in HIT_FLOATS:
                yield f"{table}-absurd-{col}", _set(table, col, 1e9), "error"
    for table, cols in columns.items():
        if "hit_id" in cols:
            yield f"{table}-duplicate-hit_id", _dup_hit_id(table), "error"
    if "truth" in columns:
        yield "truth-unknown-hit", _set("truth", "hit_id", 10**9), "error"
    yield "empty-event", _empty, "ok"


def file_mutations(path: Path) -> Iterator[tuple[str, Callable[[Path], None]]]:
    """Byte-level damage of one file: truncated, zero bytes, garbage."""
    def truncate(p: Path) -> None:
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])

    def zero(p: Path) -> None:
        p.write_bytes(b"")

    def garbage(p: Path) -> None:
        p.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())

    yield "truncated", truncate
    yield "zero-bytes", zero
    yield "garbage", garbage
