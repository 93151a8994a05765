"""Attention benchmark plot: time (ms) vs sequence length N, one line per backend.

Input is the JSON written by ``benchmarks/attention.py --json``: ``{"env": {...}, "rows": [...]}`` with rows
``{n, d, w, h, case, backend, build, fwd, fwdbwd, layer, ...}`` (times in ms; a row with ``error`` has none),
or simply a list of records ``{backend, N, D, w, fwd_ms, fwdbwd_ms, ...}``. Both spellings are normalised by
:func:`normalize` to ``backend, N, D, w, H, case`` and ``{build,fwd,fwdbwd,layer}_ms``. Records that differ
in ``D``, ``w``, ``case`` or ``dtype`` are drawn as separate lines (or pick some with ``where=``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from trackformers.errors import InputError
from trackformers.plots.figure import new_figure

#: Where :func:`default_benchmark_json` looks, relative to the repository root (first match wins).
JSON_GLOBS: tuple[str, ...] = ("benchmarks/results/attention*.json", "docs/benchmarks/attention*.json",
                               "benchmarks/attention*.json", "data/benchmarks/attention*.json")
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Timing keys drawn, one panel each (when present), with their panel titles.
TIMINGS: dict[str, str] = {"fwd_ms": "forward", "fwdbwd_ms": "forward + backward",
                           "layer_ms": "layer (mask build + forward + backward)"}
#: Spellings of ``benchmarks/attention.py`` rows → the normalised keys.
ALIASES: dict[str, str] = {"n": "N", "d": "D", "h": "H", "build": "build_ms", "fwd": "fwd_ms",
                           "fwdbwd": "fwdbwd_ms", "layer": "layer_ms"}
#: Parameters that split records into separate lines when they vary.
SERIES_KEYS: tuple[str, ...] = ("D", "w", "H", "case", "dtype")


def normalize(record: Mapping[str, Any]) -> dict[str, Any]:
    """One record with the normalised key names (:data:`ALIASES`); normalised keys win over aliases."""
    out = {ALIASES.get(k, k): v for k, v in record.items() if k not in ALIASES.values()}
    out.update({k: v for k, v in record.items() if k in ALIASES.values()})
    return out


def default_benchmark_json(root: str | os.PathLike[str] = REPO_ROOT) -> Path | None:
    """The attention benchmark JSON shipped in the repository (see :data:`JSON_GLOBS`), or None."""
    for pattern in JSON_GLOBS:
        found = sorted(Path(root).glob(pattern))
        if found:
            return found[0]
    return None


def load_benchmark(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read the benchmark JSON at ``path``; InputError if it is not a list of records with backend and N."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read the benchmark JSON ({err}).") from None
    if isinstance(data, Mapping):
        data = next((data[k] for k in ("rows", "records", "results") if k in data), None)
    if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
        raise InputError(f"{path}: expected a list of benchmark records (or {{'rows': [...]}}).")
    records = [normalize(r) for r in data]
    _check(records, str(path))
    return records


def _check(records: Sequence[Mapping[str, Any]], where: str) -> None:
    for i, rec in enumerate(records):
        missing = [k for k in ("backend", "N") if k not in rec]
        if missing:
            raise InputError(f"{where}: record {i} lacks {', '.join(missing)}; "
                             "expected backend, N and timings.")


def _time(rec: Mapping[str, Any], key: str) -> float | None:
    value = rec.get(key)
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _series_key(rec: Mapping[str, Any], vary: Iterable[str]) -> str:
    extra = ", ".join(f"{k}={rec.get(k)}" for k in vary)
    return f"{rec['backend']} ({extra})" if extra else str(rec["backend"])


def benchmark_series(records: Sequence[Mapping[str, Any]],
                     timing: str) -> dict[str, tuple[list[int], list[float]]]:
    """Per line label: (N ascending, times in ms) for ``timing``; records without that time are left out.

    Labels are the backend, plus those of :data:`SERIES_KEYS` that vary between records.
    """
    records = [normalize(r) for r in records]
    _check(records, "benchmark records")
    vary = [k for k in SERIES_KEYS if len({str(r.get(k)) for r in records}) > 1]
    series: dict[str, list[tuple[int, float]]] = {}
    for rec in records:
        t = _time(rec, timing)
        if t is not None:
            series.setdefault(_series_key(rec, vary), []).append((int(rec["N"]), t))
    return {label: ([n for n, _ in sorted(pts)], [t for _, t in sorted(pts)])
            for label, pts in sorted(series.items())}


def select(records: Sequence[Mapping[str, Any]], **where: Any) -> list[dict[str, Any]]:
    """The (normalised) records whose fields equal ``where``, e.g. ``select(rows, D=64, case="packed")``."""
    return [r for r in map(normalize, records) if all(r.get(k) == v for k, v in where.items())]


def plot_benchmark(records: Sequence[Mapping[str, Any]] | str | os.PathLike[str], *,
                   where: Mapping[str, Any] | None = None, title: str | None = None) -> Figure:
    """Time vs N per backend on log–log axes, one panel per timing key present (:data:`TIMINGS`).

    ``records`` is a list of benchmark records or the path of the benchmark JSON; ``where`` keeps only the
    records with those field values (see :func:`select`).
    """
    if isinstance(records, str | os.PathLike):
        records = load_benchmark(records)
    records = select(records, **dict(where or {}))
    present = [k for k in TIMINGS if any(_time(r, k) is not None for r in records)]
    if not present:
        raise InputError("benchmark records hold no timings; expected fwd_ms and/or fwdbwd_ms values.")
    fig, axes = new_figure(len(present), 1, size=(5.0, 4.0))
    sizes = sorted({int(r["N"]) for r in records})
    for ax, key in zip(axes, present):
        for label, (ns, times) in benchmark_series(records, key).items():
            ax.plot(ns, times, marker="o", label=label)
        ax.set(xscale="log", yscale="log", xlabel="hits per event N", ylabel="time [ms]", title=TIMINGS[key])
        ax.set_xticks(sizes, [str(n) for n in sizes], minor=False)  # the measured N, written out
        ax.set_xticks([], minor=True)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def benchmark_table(records: Sequence[Mapping[str, Any]], *, timing: str = "fwd_ms",
                    where: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """``timing`` (ms) with one row per N (and per varying parameter), one column per backend."""
    rows = select(records, **dict(where or {}))
    if not rows:
        return pd.DataFrame()
    vary = [k for k in SERIES_KEYS if len({str(r.get(k)) for r in rows}) > 1]
    frame = pd.DataFrame(rows)
    if timing not in frame:
        frame[timing] = float("nan")
    frame[timing] = pd.to_numeric(frame[timing], errors="coerce")
    return frame.pivot_table(index=[*vary, "N"], columns="backend", values=timing, aggfunc="first",
                             dropna=False)
