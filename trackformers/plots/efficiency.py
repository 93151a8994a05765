"""DM and perfect efficiency vs pT (GeV) or η, with the metrics module's binomial (Clopper-Pearson) errors.

The numbers come from :func:`trackformers.metrics.binned_efficiency`; this module only draws them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from trackformers.events import Event
from trackformers.metrics import EventMatch, binned_efficiency
from trackformers.plots.figure import new_figure

#: Series drawn by :func:`plot_efficiency`: metrics column → legend label.
EFFICIENCIES: dict[str, str] = {"dm_efficiency": "double majority", "perfect_efficiency": "perfect"}
PT_AXIS_MIN_GEV = 0.1
AXIS_LABELS: dict[str, str] = {"pt": "particle $p_T$ [GeV]", "eta": r"particle $\eta$"}


def draw_binned(ax: Axes, table: pd.DataFrame, column: str, *, label: str, color: str | None = None,
                offset: float = 0.0) -> None:
    """Draw ``table[column]`` per bin as an errorbar: x at the bin centre (± half width), y with the error
    interval ``[column_lo, column_hi]``. Empty bins (``column_total == 0``) are left out.

    The data line gets gid ``column`` so that tests and notebooks can read back what was drawn.
    ``offset`` shifts x by that fraction of the bin width, to keep overlapping series apart.
    """
    rows = table[table[f"{column}_total"] > 0]
    lo_edge, hi_edge = rows["lo"].to_numpy(np.float64), rows["hi"].to_numpy(np.float64)
    x = 0.5 * (lo_edge + hi_edge) + offset * (hi_edge - lo_edge)
    y = rows[column].to_numpy(np.float64)
    lo, hi = (rows[f"{column}_{s}"].to_numpy(np.float64) for s in ("lo", "hi"))
    yerr = np.vstack([y - lo, hi - y])
    cont = ax.errorbar(x, y, xerr=np.vstack([x - lo_edge, hi_edge - x]), yerr=yerr, fmt="o", ms=4, capsize=2,
                       label=label, color=color)
    cont.lines[0].set_gid(column)


def plot_efficiency(*, var: str = "pt", events: Iterable[Event] | None = None,
                    submissions: Iterable[pd.DataFrame] | None = None,
                    matches: Iterable[EventMatch] | None = None, table: pd.DataFrame | None = None,
                    bins: Sequence[float] | None = None, pt_min: float = 0.9, eta_max: float = 4.0,
                    min_hits: int = 3) -> Figure:
    """DM and perfect efficiency vs ``var`` ("pt" or "eta") with binomial error bars.

    Give ``table`` (a :func:`~trackformers.metrics.binned_efficiency` result), ``matches``, or ``events`` with
    ``submissions``; the other arguments are passed to ``binned_efficiency``.
    """
    if table is None:
        table = binned_efficiency(var=var, bins=bins, events=events, submissions=submissions, matches=matches,
                                  pt_min=pt_min, eta_max=eta_max, min_hits=min_hits)
    fig, (ax,) = new_figure(1, 1, size=(5.5, 4.0))
    for i, (column, label) in enumerate(EFFICIENCIES.items()):
        draw_binned(ax, table, column, label=label, color=f"C{i}", offset=0.1 * i)
    if var == "pt":
        # The pT bins span 0–100 GeV: a log axis keeps the turn-on near 1 GeV readable; the first bin
        # (from 0) then starts at the left edge.
        ax.set_xscale("log")
        ax.set_xlim(PT_AXIS_MIN_GEV, max(float(table["hi"].max()), 2 * PT_AXIS_MIN_GEV))
        cuts = rf"$|\eta| < {eta_max:g}$"
    else:
        cuts = rf"$p_T \geq {pt_min:g}$ GeV"
    n = int(table["dm_efficiency_total"].sum())
    name = AXIS_LABELS.get(var, var).split(" [")[0]
    ax.set(xlabel=AXIS_LABELS.get(var, var), ylabel="efficiency", ylim=(0.0, 1.05),
           title=f"efficiency vs {name} ({cuts}, ≥ {min_hits} hits, {n} particles)")
    ax.title.set_fontsize("medium")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return fig
