"""Validation metrics vs training step, from the ``curve`` records a training run writes (e.g. the JSON beside a
shipped checkpoint: ``data/checkpoints/best.json``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from trackformers.errors import InputError
from trackformers.plots.figure import new_figure

#: Logged keys drawn by default (names as the LightningModule logs them).
DEFAULT_KEYS: tuple[str, ...] = ("val/dm_efficiency", "val/fake_rate", "val/trackml_score")


def curve_points(records: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values of ``key``) of the records that have it, in step order."""
    rows = sorted((int(r["step"]), float(r[key])) for r in records if "step" in r and r.get(key) is not None)
    if not rows:
        raise InputError(f"no training record has both 'step' and '{key}'; expected the run's curve records.")
    steps, values = zip(*rows)
    return np.asarray(steps), np.asarray(values)


def plot_training_curve(records: Sequence[Mapping[str, Any]], *, keys: Sequence[str] = DEFAULT_KEYS,
                        title: str = "") -> Figure:
    """One line per metric ``key`` against the global training step."""
    fig, (ax,) = new_figure()
    for key in keys:
        steps, values = curve_points(records, key)
        ax.plot(steps, values, marker="o", label=key.removeprefix("val/"))
    ax.set_xlabel("training step")
    ax.set_ylabel("validation value")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return fig
