"""Per-event numbers: TrackML score, DM and perfect efficiency, fake and duplicate rate (+ their counts).

Definitions (docs/metrics.md; every fraction strict > 0.5):

* reconstructable particle: particle_id ≠ 0, >= ``min_hits`` hits in the event (after any volume
  selection), pT >= ``pt_min`` GeV, |η| < ``eta_max`` (pT, η from the particles table's px, py, pz);
* DM efficiency: reconstructable particles matched by double majority to a track of >= ``min_hits`` hits,
  over reconstructable particles; perfect efficiency: those whose hits form exactly one track;
* fake rate: tracks of >= ``min_hits`` hits that no particle matches by DM, over tracks of >= ``min_hits``;
* duplicate rate: particles with more than one purity-matched track, over purity-matched particles.

A rate without a denominator is NaN (and is skipped by the mean over events).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackformers.events import Event
from trackformers.io.submission import check_submission
from trackformers.metrics.matching import EventMatch, match_event

#: The five headline numbers, in table order.
HEADLINE = ("trackml_score", "dm_efficiency", "perfect_efficiency", "fake_rate", "duplicate_rate")
#: The counts behind them: name → (numerator, denominator) of the rate.
RATIOS = {"dm_efficiency": ("n_dm_matched", "n_reconstructable"),
          "perfect_efficiency": ("n_perfect", "n_reconstructable"),
          "fake_rate": ("n_fake", "n_tracks_min_hits"),
          "duplicate_rate": ("n_duplicated", "n_purity_matched")}


def reconstructable(particles: pd.DataFrame, *, pt_min: float = 0.9, eta_max: float = 4.0, min_hits: int = 3,
                    cut_pt: bool = True, cut_eta: bool = True) -> np.ndarray:
    """Mask (shape (P,)) of reconstructable rows of an :class:`EventMatch` particles table.

    ``cut_pt`` / ``cut_eta`` False drop that cut (for efficiency binned in that variable).
    """
    keep = (particles["particle_id"].to_numpy() != 0) & (particles["nhits"].to_numpy() >= min_hits)
    with np.errstate(invalid="ignore"):
        if cut_pt:
            keep &= particles["pt"].to_numpy() >= pt_min
        if cut_eta:
            keep &= np.abs(particles["eta"].to_numpy()) < eta_max
    return keep


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def rates_of(match: EventMatch, *, pt_min: float = 0.9, eta_max: float = 4.0) -> dict[str, float | int]:
    """The per-event numbers and counts of one :class:`EventMatch` (``min_hits`` is the match's)."""
    p, t = match.particles, match.tracks
    reco = reconstructable(p, pt_min=pt_min, eta_max=eta_max, min_hits=match.min_hits)
    long = t["nhits"].to_numpy() >= match.min_hits
    n_purity = p["n_purity_tracks"].to_numpy()
    counts = {
        "n_hits": int(t["nhits"].sum()),
        "n_tracks": len(t),
        "n_tracks_min_hits": int(long.sum()),
        "n_fake": int((long & (t["dm_particle_id"].to_numpy() == 0)).sum()),
        "n_particles": len(p),
        "n_reconstructable": int(reco.sum()),
        "n_dm_matched": int((reco & p["dm_matched"].to_numpy()).sum()),
        "n_perfect": int((reco & p["perfect"].to_numpy()).sum()),
        "n_purity_matched": int((n_purity > 0).sum()),
        "n_duplicated": int((n_purity > 1).sum()),
    }
    out: dict[str, float | int] = {"event_id": match.event_id, "trackml_score": match.score}
    out.update({name: _ratio(counts[num], counts[den]) for name, (num, den) in RATIOS.items()})
    out.update(counts)
    return out


def evaluate_event(*, event: Event, submission: pd.DataFrame, pt_min: float = 0.9, eta_max: float = 4.0,
                   min_hits: int = 3) -> dict[str, float | int]:
    """All per-event numbers of ``submission[hit_id, track_id]`` (one row per hit of ``event``).

    Returns ``event_id``, the :data:`HEADLINE` keys (NaN without a denominator) and the counts of
    :data:`RATIOS` plus ``n_hits``, ``n_tracks``, ``n_particles``. InputError for a submission that misses a
    hit, assigns one twice or names an unknown hit, and for an event without truth.
    """
    check_submission(event, submission)
    return rates_of(match_event(event=event, submission=submission, min_hits=min_hits),
                    pt_min=pt_min, eta_max=eta_max)
