"""Tracking metrics, pure functions with keyword-only arguments (definitions: docs/metrics.md).

* :func:`hit_weights` — TrackML hit weights for events that lack them;
* :func:`score_event` — the TrackML challenge score of one event;
* :func:`match_event` — per-particle and per-track matching tables (DM, perfect, purity-only);
* :func:`evaluate_event` — score, DM/perfect efficiency, fake and duplicate rate of one event;
* :func:`summarize`, :func:`format_table` — means over events (+ pooled totals) and a text table;
* :func:`binned_efficiency`, :func:`binned_rates` — the same binned in pT / η with Clopper-Pearson errors.
"""

from trackformers.metrics.binned import (
    ETA_BINS,
    PT_BINS,
    binned_efficiency,
    binned_fraction,
    binned_rates,
    clopper_pearson,
)
from trackformers.metrics.matching import EventMatch, match_event
from trackformers.metrics.rates import HEADLINE, RATIOS, evaluate_event, rates_of, reconstructable
from trackformers.metrics.score import score_event
from trackformers.metrics.table import format_table, jsonable, summarize, to_json
from trackformers.metrics.weights import hit_weights, weight_pt

__all__ = [
    "ETA_BINS", "HEADLINE", "PT_BINS", "RATIOS", "EventMatch", "binned_efficiency", "binned_fraction",
    "binned_rates", "clopper_pearson", "evaluate_event", "format_table", "hit_weights", "jsonable",
    "match_event", "rates_of", "reconstructable", "score_event", "summarize", "to_json", "weight_pt",
]
