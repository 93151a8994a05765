"""Efficiency vs pT and η, fake and duplicate rate vs η, with Clopper-Pearson (exact binomial) intervals.

Counts are pooled over events within each bin (a histogram, unlike the headline means over events). The
interval is the central 68.27 % Clopper-Pearson interval from the beta distribution: lower =
Beta⁻¹(α/2; k, n−k+1), upper = Beta⁻¹(1−α/2; k+1, n−k), with lower 0 at k = 0 and upper 1 at k = n; NaN for
an empty bin. Efficiency binned in one variable applies every reconstructability cut except the cut on that
variable. Fake rate is binned in the η of the track's mean hit position; duplicate rate in the particle's η.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from trackformers.events import Event
from trackformers.metrics.matching import EventMatch, match_event
from trackformers.metrics.rates import reconstructable

#: Default bin edges: pT in GeV, η.
PT_BINS: tuple[float, ...] = (0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0)
ETA_BINS: tuple[float, ...] = tuple(np.round(np.linspace(-4.0, 4.0, 17), 6))
ONE_SIGMA = 0.682689492137


def clopper_pearson(k: np.ndarray, n: np.ndarray, *, cl: float = ONE_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Central ``cl`` interval (lower, upper) of a binomial fraction k/n, arrays of ``k``'s shape."""
    from scipy.stats import beta  # lazy: scipy.stats takes seconds to import and most callers never bin

    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    alpha = 1.0 - cl
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    empty = n <= 0
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)


def binned_fraction(values: np.ndarray, passed: np.ndarray, bins: Sequence[float],
                    prefix: str) -> pd.DataFrame:
    """Per bin of ``values``: ``{prefix}_total``, ``{prefix}_pass``, ``{prefix}``, ``{prefix}_lo/_hi``."""
    edges = np.asarray(bins, np.float64)
    inside = np.isfinite(values) & (values >= edges[0]) & (values < edges[-1])
    idx = np.searchsorted(edges, values[inside], side="right") - 1
    n = np.bincount(idx, minlength=len(edges) - 1)
    k = np.bincount(idx, weights=np.asarray(passed, bool)[inside], minlength=len(edges) - 1).astype(np.int64)
    lo, hi = clopper_pearson(k, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    return pd.DataFrame({f"{prefix}_total": n, f"{prefix}_pass": k, prefix: frac, f"{prefix}_lo": lo,
                         f"{prefix}_hi": hi})


def _matches(matches: Iterable[EventMatch] | None, events: Iterable[Event] | None,
             submissions: Iterable[pd.DataFrame] | None, min_hits: int) -> list[EventMatch]:
    if matches is not None:
        return list(matches)
    if events is None or submissions is None:
        raise ValueError("pass matches=, or both events= and submissions=")
    pairs = zip(events, submissions, strict=True)
    return [match_event(event=e, submission=s, min_hits=min_hits) for e, s in pairs]


def _edges(bins: Sequence[float]) -> pd.DataFrame:
    edges = np.asarray(bins, np.float64)
    return pd.DataFrame({"lo": edges[:-1], "hi": edges[1:]})


def binned_efficiency(*, var: str = "pt", bins: Sequence[float] | None = None,
                      events: Iterable[Event] | None = None,
                      submissions: Iterable[pd.DataFrame] | None = None,
                      matches: Iterable[EventMatch] | None = None, pt_min: float = 0.9,
                      eta_max: float = 4.0, min_hits: int = 3) -> pd.DataFrame:
    """DM and perfect efficiency per bin of ``var`` ("pt" in GeV or "eta").

    Give ``matches`` (from :func:`match_event`) or ``events`` with ``submissions`` (same order). Columns:
    lo, hi, dm_efficiency_total (reconstructable particles), dm_efficiency_pass, dm_efficiency,
    dm_efficiency_lo, dm_efficiency_hi, and the same for perfect_efficiency.
    """
    if var not in ("pt", "eta"):
        raise ValueError(f"var must be 'pt' or 'eta', not {var!r}")
    bins = (PT_BINS if var == "pt" else ETA_BINS) if bins is None else bins
    parts = [m.particles for m in _matches(matches, events, submissions, min_hits)]
    p = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {c: [] for c in ("particle_id", "nhits", "pt", "eta", "dm_matched", "perfect")})
    keep = reconstructable(p, pt_min=pt_min, eta_max=eta_max, min_hits=min_hits,
                           cut_pt=var != "pt", cut_eta=var != "eta")
    values = p[var].to_numpy(np.float64)[keep]
    return pd.concat([_edges(bins),
                      binned_fraction(values, p["dm_matched"].to_numpy(bool)[keep], bins, "dm_efficiency"),
                      binned_fraction(values, p["perfect"].to_numpy(bool)[keep], bins, "perfect_efficiency")],
                     axis=1)


def binned_rates(*, bins: Sequence[float] | None = None, events: Iterable[Event] | None = None,
                 submissions: Iterable[pd.DataFrame] | None = None,
                 matches: Iterable[EventMatch] | None = None, min_hits: int = 3) -> pd.DataFrame:
    """Fake rate vs track η and duplicate rate vs particle η per η bin.

    Columns: lo, hi, fake_rate_total (tracks of >= min_hits hits), fake_rate_pass (fakes), fake_rate,
    fake_rate_lo/_hi, duplicate_rate_total (purity-matched particles), duplicate_rate_pass, duplicate_rate,
    duplicate_rate_lo/_hi.
    """
    bins = ETA_BINS if bins is None else bins
    ms = _matches(matches, events, submissions, min_hits)
    tr = [m.tracks[m.tracks["nhits"] >= m.min_hits] for m in ms]
    pa = [m.particles[m.particles["n_purity_tracks"] > 0] for m in ms]
    t = pd.concat(tr, ignore_index=True) if tr else pd.DataFrame({"eta": [], "dm_particle_id": []})
    p = pd.concat(pa, ignore_index=True) if pa else pd.DataFrame({"eta": [], "n_purity_tracks": []})
    fake = binned_fraction(t["eta"].to_numpy(np.float64), t["dm_particle_id"].to_numpy() == 0, bins,
                           "fake_rate")
    dup = binned_fraction(p["eta"].to_numpy(np.float64), p["n_purity_tracks"].to_numpy() > 1, bins,
                          "duplicate_rate")
    return pd.concat([_edges(bins), fake, dup], axis=1)
