"""Attention benchmark plot: time (ms) vs sequence length N, one line per backend.

Input is the JSON written by ``benchmarks/attention.py --json``: a list of records (or an object holding
them under ``"records"``/``"results"``), each with at least ``backend``, ``N`` and one of the timing keys
``fwd_ms`` / ``fwdbwd_ms`` (milliseconds; missing, null or NaN where a backend did not run).
Records that differ in head dim ``D`` or window ``w`` are drawn as separate lines.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from trackformers.errors import InputError
from trackformers.plots.figure import new_figure

#: Timing keys drawn, one panel each, with their panel titles.
TIMINGS: dict[str, str] = {"fwd_ms": "forward", "fwdbwd_ms": "forward + backward"}


def load_benchmark(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read the benchmark JSON at ``path``; InputError if it is not a list of records with backend and N."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read the benchmark JSON ({err}).") from None
    if isinstance(data, Mapping):
        data = data.get("records", data.get("results"))
    if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
        raise InputError(f"{path}: expected a list of benchmark records (or {{'records': [...]}}).")
    records = [dict(r) for r in data]
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

    Labels are the backend, plus ``D``/``w`` (and ``dtype``) where those vary between records.
    """
    _check(records, "benchmark records")
    vary = [k for k in ("D", "w", "dtype") if len({str(r.get(k)) for r in records}) > 1]
    series: dict[str, list[tuple[int, float]]] = {}
    for rec in records:
        t = _time(rec, timing)
        if t is not None:
            series.setdefault(_series_key(rec, vary), []).append((int(rec["N"]), t))
    return {label: ([n for n, _ in sorted(pts)], [t for _, t in sorted(pts)])
            for label, pts in sorted(series.items())}


def plot_benchmark(records: Sequence[Mapping[str, Any]] | str | os.PathLike[str], *,
                   title: str | None = None) -> Figure:
    """Time vs N per backend on log–log axes, one panel per timing key present (forward, forward+backward).

    ``records`` is a list of benchmark records or the path of the benchmark JSON.
    """
    if isinstance(records, str | os.PathLike):
        records = load_benchmark(records)
    present = [k for k in TIMINGS if any(_time(r, k) is not None for r in records)]
    if not present:
        raise InputError("benchmark records hold no timings; expected fwd_ms and/or fwdbwd_ms values.")
    fig, axes = new_figure(len(present), 1, size=(5.0, 4.0))
    for ax, key in zip(axes, present):
        for label, (ns, times) in benchmark_series(records, key).items():
            ax.plot(ns, times, marker="o", label=label)
        ax.set(xscale="log", yscale="log", xlabel="hits per event N", ylabel="time [ms]", title=TIMINGS[key])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
