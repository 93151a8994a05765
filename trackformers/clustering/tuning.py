"""Scan a clusterer's hyper-parameter on validation events; efficiency and fake rate per value.

The model runs once per event: :class:`Recorder` captures what the model hands to its clusterer (the
embedding ``x``, ``beta`` and keyword arguments such as ``phi``) and answers with one id per row, which tells
how rows map to hit ids. Each scanned value then only re-runs the clusterer on the recorded tensors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from trackformers.clustering.protocol import make_clusterer
from trackformers.errors import InputError
from trackformers.events import Event

#: Columns of the scan table, in order.
COLUMNS: tuple[str, ...] = ("value", "dm_efficiency", "fake_rate", "duplicate_rate", "perfect_efficiency",
                            "trackml_score", "tracks_per_event", "ms_per_event")


@dataclass
class Recorder:
    """A stand-in clusterer that stores its inputs and labels row ``i`` as track ``i``."""

    calls: list[tuple[Tensor, Tensor | None, dict[str, Any]]] = field(default_factory=list)
    uses_phi: bool = True  # ask for φ too, so a φ-windowed clusterer can be replayed

    def __call__(self, x: Tensor, *, beta: Tensor | None = None, **kwargs: Any) -> Tensor:
        self.calls.append((x.detach(), None if beta is None else beta.detach(), kwargs))
        return torch.arange(x.shape[0], dtype=torch.int64, device=x.device)


@dataclass
class Recorded:
    """One event's clusterer inputs and the hit id of each of their rows (None: replay impossible)."""

    x: Tensor
    beta: Tensor | None
    kwargs: dict[str, Any]
    hit_ids: np.ndarray | None


def record(module: Any, event: Event) -> Recorded | None:
    """Run the model once and capture its clusterer inputs; None if they cannot be replayed."""
    rec = Recorder()
    with torch.inference_mode():
        sub = module.reconstruct(event, clusterer=rec)
    if len(rec.calls) != 1:
        return None
    x, beta, kwargs = rec.calls[0]
    track = sub["track_id"].to_numpy(np.int64)
    n = x.shape[0]
    if n != len(sub) or not np.array_equal(np.sort(track), np.arange(n)):
        return None  # the module post-processed the labels: re-run it per value instead
    hit_ids = np.empty(n, np.int64)
    hit_ids[track] = sub["hit_id"].to_numpy(np.int64)
    return Recorded(x, beta, kwargs, hit_ids)


def _submission(module: Any, event: Event, rec: Recorded | None, clusterer: Callable[..., Tensor]
                ) -> pd.DataFrame:
    if rec is None:
        with torch.inference_mode():
            return module.reconstruct(event, clusterer=clusterer)
    kwargs = rec.kwargs if getattr(clusterer, "uses_phi", False) else {}
    labels = clusterer(rec.x, beta=rec.beta, **kwargs)
    return pd.DataFrame({"hit_id": rec.hit_ids, "track_id": labels.cpu().numpy().astype(np.int64)})


def scan(module: Any, events: Iterable[Event], *, clusterer: str, param: str, values: Sequence[Any],
         fixed: dict[str, Any] | None = None) -> pd.DataFrame:
    """Metrics per value of one hyper-parameter (means over events, as in ``trackformers evaluate``).

    Args:
        module: a TrackingModule (``reconstruct(event, clusterer=...)``).
        events: validation events with truth.
        clusterer: registered name (``dbscan``, ``hdbscan``, ``condensation``, ``gpu``).
        param: the scanned keyword, e.g. ``eps``; ``values`` its values.
        fixed: the clusterer's other keywords.
    Returns:
        One row per value with :data:`COLUMNS`.
    """
    from trackformers.metrics import evaluate_event, summarize

    fixed = dict(fixed or {})
    cached = [(event, record(module, event)) for event in events if event.truth is not None]
    rows = []
    for value in values:
        algo = make_clusterer(clusterer, **{**fixed, param: value})
        per_event, tracks, seconds = [], 0, 0.0
        for event, rec in cached:
            t0 = time.perf_counter()
            sub = _submission(module, event, rec, algo)
            seconds += time.perf_counter() - t0
            tracks += int(sub["track_id"].nunique())
            per_event.append(evaluate_event(event=event, submission=sub))
        mean = summarize(per_event) if per_event else {}
        n = max(len(cached), 1)
        rows.append({"value": value, **{k: float(mean.get(k, np.nan)) for k in COLUMNS[1:6]},
                     "tracks_per_event": tracks / n, "ms_per_event": 1e3 * seconds / n})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def format_scan(table: pd.DataFrame, param: str) -> str:
    """Fixed-width text table of :func:`scan`'s result, rates in percent."""
    head = f"{param:>10} {'DM eff %':>9} {'fake %':>8} {'dup %':>7} {'perfect %':>10} {'score':>7} " \
           f"{'tracks':>8} {'ms':>8}"
    lines = [head]
    for row in table.itertuples(index=False):
        lines.append(f"{row.value!s:>10} {100 * row.dm_efficiency:>9.2f} {100 * row.fake_rate:>8.2f} "
                     f"{100 * row.duplicate_rate:>7.2f} {100 * row.perfect_efficiency:>10.2f} "
                     f"{row.trackml_score:>7.4f} {row.tracks_per_event:>8.1f} {row.ms_per_event:>8.1f}")
    return "\n".join(lines)


def write_tuned(source: str | Path, dest: str | Path, *, clusterer: str, param: str, table: pd.DataFrame,
                fixed: dict[str, Any] | None = None, note: str = "") -> dict[str, Any]:
    """Copy checkpoint ``source`` to ``dest`` with the best scanned value as its default clusterer.

    Best = the highest TrackML score (it counts found and fake hits in one number; DM efficiency − fake rate
    prefers values that find almost nothing at a low fake rate). Only the task's ``clusterer``
    hyper-parameter changes (weights untouched); the scan table is kept under ``trackformers.tuned``.
    Written atomically. Returns the chosen clusterer specification.
    """

    from trackformers.io.atomic import atomic_path

    scores = table["trackml_score"].fillna(-1.0).to_numpy()
    if not len(scores):
        raise ValueError("empty scan table: nothing to choose from")
    best = table["value"].iloc[int(np.argmax(scores))]  # from the column: a row would upcast ints to float
    spec = {"name": clusterer, **(fixed or {}), param: best.item() if hasattr(best, "item") else best}
    payload = torch.load(source, map_location="cpu", weights_only=True)
    try:
        payload["hyper_parameters"]["task"]["init_args"]["clusterer"] = spec
    except (KeyError, TypeError):
        raise InputError(f"checkpoint {source}: no hyper_parameters.task.init_args to store the clusterer in; "
                         "expected a trackformers checkpoint.") from None
    extra = payload.setdefault("trackformers", {})
    extra["tuned"] = {"clusterer": spec, "param": param, "note": note,
                      "table": [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                                for row in table.to_dict("records")]}
    with atomic_path(dest) as tmp:  # makes the folder too
        torch.save(payload, tmp)
    return spec
