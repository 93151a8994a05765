"""TrackML score per event and its mean over events, from a :func:`trackformers.metrics.summarize` summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from trackformers.errors import InputError
from trackformers.plots.figure import new_figure


def _number(value: Any) -> float:
    """A float, NaN for None (a summary read back from JSON stores NaN as null)."""
    return float("nan") if value is None else float(value)


def score_points(summary: Mapping[str, Any], *, event_ids: Sequence[int] | None = None,
                 key: str = "trackml_score") -> tuple[np.ndarray, np.ndarray]:
    """(event ids, per-event values of ``key``) taken from ``summary["per_event"]``.

    Event ids come from ``event_ids``, else each per-event dict's ``event_id``, else 0, 1, 2, ...
    """
    per_event = summary.get("per_event")
    if not per_event:
        raise InputError("the metrics summary has no per_event list; expected summarize(...) output.")
    if any(key not in e for e in per_event):
        raise InputError(f"a per-event metrics dict lacks '{key}'; expected evaluate_event(...) output.")
    values = np.array([_number(e[key]) for e in per_event])
    if event_ids is None:
        event_ids = [int(e.get("event_id", i)) for i, e in enumerate(per_event)]
    ids = np.asarray(event_ids, dtype=np.int64)
    if len(ids) != len(values):
        raise InputError(f"{len(ids)} event ids for {len(values)} per-event metrics; expected one per event.")
    return ids, values


def plot_score(summary: Mapping[str, Any], *, event_ids: Sequence[int] | None = None,
               key: str = "trackml_score", label: str = "TrackML score") -> Figure:
    """Per-event ``key`` as points (line gid ``"per_event"``) and the summary mean (line gid ``"mean"``)."""
    ids, values = score_points(summary, event_ids=event_ids, key=key)
    order = np.arange(len(ids))
    fig, (ax,) = new_figure(1, 1, size=(max(5.0, 0.25 * len(ids)), 3.5))
    ax.plot(order, values, "o", gid="per_event", label="per event")
    mean = _number(summary.get(key))
    if np.isnan(mean) and np.isfinite(values).any():
        mean = float(np.nanmean(values))
    ax.axhline(mean, color="C3", ls="--", gid="mean", label=f"mean {mean:.3f}")
    ax.set_xticks(order, [str(i) for i in ids], rotation=90 if len(ids) > 12 else 0, fontsize="small")
    ax.set(xlabel="event id", ylabel=label, ylim=(0.0, 1.05), title=f"{label} per event")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="lower right")
    return fig
