"""Evaluation plots (matplotlib, Agg, PNG + PDF, written atomically); every number drawn comes from
:mod:`trackformers.metrics`.

* :func:`plot_efficiency` — DM and perfect efficiency vs pT or η with binomial error bars;
* :func:`plot_rates` — fake and duplicate rate vs η;
* :func:`plot_score` — TrackML score per event;
* :func:`plot_event` — x–y and r–z views, reconstruction beside truth, zoom; :func:`worst_particles`;
* :func:`plot_training_curve` — validation metrics vs training step;
* :func:`plot_benchmark` — attention time vs N per backend from ``benchmarks/attention.py --json``;
* :func:`write_evaluation_plots` — all of the evaluation plots of a set of events into one folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from trackformers.events import Event
from trackformers.plots.benchmark import load_benchmark, plot_benchmark
from trackformers.plots.efficiency import plot_efficiency
from trackformers.plots.event_display import plot_event, worst_particles
from trackformers.plots.figure import FORMATS, save_figure
from trackformers.plots.rates import plot_rates
from trackformers.plots.score import plot_score
from trackformers.plots.training import plot_training_curve

__all__ = ["load_benchmark", "plot_benchmark", "plot_efficiency", "plot_event", "plot_rates", "plot_score",
           "plot_training_curve", "save_figure", "worst_particles", "write_evaluation_plots"]


def write_evaluation_plots(*, events: Iterable[Event], submissions: Iterable[pd.DataFrame],
                           summary: Mapping[str, Any], out_dir: str | os.PathLike[str],
                           benchmark: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | None = None,
                           pt_min: float = 0.9, eta_max: float = 4.0, min_hits: int = 3,
                           formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write the evaluation plots of ``events`` / ``submissions`` (same order) to ``out_dir``.

    Files (each .png and .pdf, or ``formats``): efficiency_pt, efficiency_eta, rates_eta, score (from
    ``summary``, a :func:`trackformers.metrics.summarize` result), event_display_<first event name>, and
    attention_benchmark when ``benchmark`` (records or the benchmark JSON path) is given. Returns the paths.
    """
    from trackformers.metrics import match_event

    events, submissions = list(events), list(submissions)
    matches = [match_event(event=e, submission=s, min_hits=min_hits)
               for e, s in zip(events, submissions, strict=True)]
    cuts = {"pt_min": pt_min, "eta_max": eta_max, "min_hits": min_hits}
    figures = {
        "efficiency_pt": plot_efficiency(var="pt", matches=matches, **cuts),
        "efficiency_eta": plot_efficiency(var="eta", matches=matches, **cuts),
        "rates_eta": plot_rates(matches=matches, min_hits=min_hits),
        "score": plot_score(summary),
    }
    if events:
        figures[f"event_display_{events[0].name}"] = plot_event(events[0], submissions[0])
    if benchmark is not None:
        figures["attention_benchmark"] = plot_benchmark(benchmark)
    paths: list[Path] = []
    for stem, fig in figures.items():
        paths += save_figure(fig, out_dir, stem, formats=formats)
    return paths
