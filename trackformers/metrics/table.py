"""Summaries over events: means of per-event values (as the TrackML score is), pooled totals, a text table.

``summarize`` keeps the headline keys at the top level (NaN-aware mean over events: an event where a rate
has no denominator does not enter that rate's mean), pooled rates (Σ numerators / Σ denominators) and summed
counts under ``pooled``, and the per-event dicts under ``per_event``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trackformers.metrics.rates import HEADLINE, RATIOS


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray([float(v) for v in values], np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if len(arr) else float("nan")


def summarize(per_event: Sequence[Mapping[str, Any]], *,
              config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Mean over events of every headline number, pooled totals, and the per-event list.

    Args:
        per_event: dicts from :func:`trackformers.metrics.evaluate_event`.
        config: cuts and inputs to record (e.g. ``{"pt_min": 0.9}``), stored under ``config``.
    """
    out: dict[str, Any] = {key: _nanmean([e[key] for e in per_event]) for key in HEADLINE}
    counts = sorted({k for e in per_event for k in e if k.startswith("n_")})
    totals = {k: int(sum(int(e.get(k, 0)) for e in per_event)) for k in counts}
    pooled: dict[str, Any] = {name: (totals[num] / totals[den] if totals.get(den) else float("nan"))
                              for name, (num, den) in RATIOS.items()}
    pooled.update(totals)
    out["n_events"] = len(per_event)
    out["n_events_with"] = {key: sum(math.isfinite(float(e[key])) for e in per_event) for key in HEADLINE}
    out["pooled"] = pooled
    if config is not None:
        out["config"] = dict(config)
    out["per_event"] = [dict(e) for e in per_event]
    return out


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4f}"


def format_table(summary: Mapping[str, Any]) -> str:
    """A plain-text table: metric, mean over events (events counted), pooled value, pooled counts."""
    pooled = summary.get("pooled", {})
    n_with = summary.get("n_events_with", {})
    rows = [("metric", f"mean over {summary.get('n_events', 0)} events", "pooled", "pooled counts")]
    for key in HEADLINE:
        ratio = RATIOS.get(key)
        counts = f"{pooled.get(ratio[0], 0)} / {pooled.get(ratio[1], 0)}" if ratio else ""
        mean = _fmt(summary.get(key))
        if key in n_with and n_with[key] != summary.get("n_events"):
            mean += f" ({n_with[key]} event{'' if n_with[key] == 1 else 's'})"
        rows.append((key, mean, _fmt(pooled.get(key)) if ratio else "", counts))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    config = summary.get("config")
    if config:
        lines.append("cuts: " + ", ".join(f"{k}={v}" for k, v in config.items()))
    return "\n".join(lines)


def jsonable(obj: Any) -> Any:
    """``obj`` with NaN/inf → None and numpy scalars/arrays → Python values (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(summary: Mapping[str, Any]) -> str:
    """Strict JSON text of a summary (NaN written as null)."""
    return json.dumps(jsonable(summary), indent=2, allow_nan=False)
