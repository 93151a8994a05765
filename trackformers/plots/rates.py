"""Fake rate (vs track η) and duplicate rate (vs particle η) with binomial (Clopper-Pearson) error bars.

The numbers come from :func:`trackformers.metrics.binned_rates`; this module only draws them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
from matplotlib.figure import Figure

from trackformers.events import Event
from trackformers.metrics import EventMatch, binned_rates
from trackformers.plots.efficiency import draw_binned
from trackformers.plots.figure import new_figure

#: Panels drawn by :func:`plot_rates`: metrics column → (panel title, x label).
RATES: dict[str, tuple[str, str]] = {
    "fake_rate": ("fake rate", r"track $\eta$ (mean hit position)"),
    "duplicate_rate": ("duplicate rate", r"particle $\eta$"),
}


def plot_rates(*, events: Iterable[Event] | None = None, submissions: Iterable[pd.DataFrame] | None = None,
               matches: Iterable[EventMatch] | None = None, table: pd.DataFrame | None = None,
               bins: Sequence[float] | None = None, min_hits: int = 3) -> Figure:
    """Two panels: fake rate vs η and duplicate rate vs η, each line with gid = its metrics column.

    Give ``table`` (a :func:`~trackformers.metrics.binned_rates` result), ``matches``, or ``events`` with
    ``submissions``.
    """
    if table is None:
        table = binned_rates(bins=bins, events=events, submissions=submissions, matches=matches,
                             min_hits=min_hits)
    fig, axes = new_figure(2, 1, size=(5.0, 4.0))
    for i, (ax, (column, (title, xlabel))) in enumerate(zip(axes, RATES.items())):
        draw_binned(ax, table, column, label=title, color=f"C{i + 2}")
        n = int(table[f"{column}_total"].sum())
        what = f"tracks of ≥ {min_hits} hits" if column == "fake_rate" else "purity-matched particles"
        ax.set(xlabel=xlabel, ylabel=title, title=f"{title} vs η ({n} {what})")
        ax.set_ylim(bottom=0.0)
        ax.title.set_fontsize("medium")
        ax.grid(True, alpha=0.3)
    return fig
