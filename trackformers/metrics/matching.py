"""Track ↔ particle matching, vectorised over hits (no Python loop over hits, tracks or particles).

Conventions (docs/metrics.md): all fractions are strict, ``n_maj / n > 0.5`` tested as ``2 * n_maj > n`` in
integers. The majority particle of a track is the particle with most of its hits, ties going to the lower
``particle_id``; noise (``particle_id`` 0) may be a majority (as in the challenge) but never matches.

* double majority (DM): ``2 n(t∩p) > n(t)`` and ``2 n(t∩p) > n(p)``, p ≠ 0;
* perfect: ``n(t∩p) = n(t) = n(p)``, p ≠ 0 (the track is exactly the particle's hits);
* purity-only: ``2 n(t∩p) > n(t)``, p ≠ 0, and ``n(t) >= min_hits``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trackformers.errors import InputError
from trackformers.events import Event
from trackformers.metrics.kinematics import group_eta, particle_table
from trackformers.metrics.weights import hit_weights


def align(hit_ids: np.ndarray, submission: pd.DataFrame, *, where: str = "submission") -> np.ndarray:
    """Track id of every hit in ``hit_ids`` (shape (N,) int64); InputError if one is missing or doubled.

    Submission rows for other hit ids are ignored (as the challenge's left merge on truth does).
    """
    sub_h = submission["hit_id"].to_numpy(np.int64)
    sub_t = submission["track_id"].to_numpy(np.int64)
    order = np.argsort(sub_h, kind="stable")
    s = sub_h[order]
    dup = s[1:] == s[:-1]
    if dup.any():
        raise InputError(f"{where}: hit_id {s[1:][dup][0]} is assigned twice; "
                         "expected every hit exactly once.")
    pos = np.minimum(np.searchsorted(s, hit_ids), max(len(s) - 1, 0))
    found = (s[pos] == hit_ids) if len(s) else np.zeros(len(hit_ids), bool)
    if not found.all():
        raise InputError(f"{where}: hit_id {hit_ids[~found][0]} has no track ({int((~found).sum())} of "
                         f"{len(hit_ids)} hits missing); expected every hit exactly once.")
    return sub_t[order][pos] if len(s) else np.zeros(0, np.int64)


@dataclass(frozen=True)
class Majority:
    """Per-track majority particle. Shapes: (T,) per track, (P,) per particle, (N,) per hit."""

    track_id: np.ndarray  # (T,) sorted unique track ids
    track_index_h: np.ndarray  # (N,) index into track_id of every hit
    track_nhits: np.ndarray  # (T,)
    particle_id: np.ndarray  # (P,) sorted unique particle ids (0 = noise if present)
    particle_nhits: np.ndarray  # (P,)
    maj_index: np.ndarray  # (T,) index into particle_id of the majority particle
    maj_nhits: np.ndarray  # (T,) hits of the track that belong to it
    maj_weight: np.ndarray  # (T,) their summed weight

    @property
    def maj_particle(self) -> np.ndarray:
        return self.particle_id[self.maj_index]


def majority(*, track_h: np.ndarray, particle_h: np.ndarray, weight_h: np.ndarray | None = None) -> Majority:
    """Majority particle of every track from per-hit track ids, particle ids and weights (all shape (N,))."""
    t_id, t_idx = np.unique(track_h, return_inverse=True)
    p_id, p_idx = np.unique(particle_h, return_inverse=True)
    n_p = len(p_id)
    key = t_idx.astype(np.int64) * max(n_p, 1) + p_idx
    pair, pair_inv, pair_n = np.unique(key, return_inverse=True, return_counts=True)
    weights = np.zeros(len(key)) if weight_h is None else np.asarray(weight_h, np.float64)
    pair_w = np.bincount(pair_inv, weights=weights, minlength=len(pair))
    pair_t, pair_p = pair // max(n_p, 1), pair % max(n_p, 1)
    # Per track: most hits first, then the lower particle id (p_id is sorted, so lower index = lower id).
    order = np.lexsort((pair_p, -pair_n, pair_t))
    first = order[np.r_[True, pair_t[order][1:] != pair_t[order][:-1]]] if len(order) else order
    return Majority(track_id=t_id, track_index_h=t_idx, track_nhits=np.bincount(t_idx, minlength=len(t_id)),
                    particle_id=p_id, particle_nhits=np.bincount(p_idx, minlength=n_p),
                    maj_index=pair_p[first], maj_nhits=pair_n[first], maj_weight=pair_w[first])


def good_tracks(m: Majority) -> np.ndarray:
    """The challenge's good tracks (shape (T,) bool): both majority fractions strictly above 0.5."""
    return (2 * m.maj_nhits > m.track_nhits) & (2 * m.maj_nhits > m.particle_nhits[m.maj_index])


@dataclass(frozen=True)
class EventMatch:
    """Matching result of one event: its score, one row per non-noise particle and one row per track.

    ``particles``: particle_id, nhits (in this event), pt (GeV), eta, dm_matched (by a track of >= min_hits
    hits), perfect, n_purity_tracks. ``tracks``: track_id, nhits, eta (of the mean hit position),
    majority_particle_id, majority_nhits, dm_particle_id (0 = none), purity_matched.
    """

    event_id: int
    score: float
    min_hits: int
    particles: pd.DataFrame
    tracks: pd.DataFrame


def event_weights(event: Event) -> np.ndarray:
    """Per-truth-row weights: the truth ``weight`` column if it sums to > 0, else :func:`hit_weights`."""
    w = event.truth["weight"].to_numpy(np.float64) if "weight" in event.truth else np.zeros(len(event.truth))
    return w if w.sum() > 0 else hit_weights(truth=event.truth, particles=event.particles)


def match_event(*, event: Event, submission: pd.DataFrame, min_hits: int = 3) -> EventMatch:
    """Match the tracks of ``submission[hit_id, track_id]`` to the truth of ``event`` (truth required)."""
    if event.truth is None:
        raise InputError(f"{event.source} (event {event.event_id}): no truth table; evaluation needs truth.")
    hit_ids = event.hits["hit_id"].to_numpy(np.int64)
    where = f"{submission.attrs.get('source', 'submission')} (event {event.event_id})"
    track_h = align(hit_ids, submission, where=where)
    # Hits without a truth row count as noise with weight 0.
    truth = event.truth.set_index("hit_id")
    pid_h = truth["particle_id"].reindex(hit_ids, fill_value=0).to_numpy(np.int64)
    w_h = pd.Series(event_weights(event), index=truth.index).reindex(hit_ids, fill_value=0.0).to_numpy()
    m = majority(track_h=track_h, particle_h=pid_h, weight_h=w_h)
    total = w_h.sum()
    score = float(m.maj_weight[good_tracks(m)].sum() / total) if total > 0 else float("nan")

    maj = m.maj_particle
    n_t, n_maj, n_p_maj = m.track_nhits, m.maj_nhits, m.particle_nhits[m.maj_index]
    real = maj != 0
    dm = real & (2 * n_maj > n_t) & (2 * n_maj > n_p_maj)
    perfect = real & (n_maj == n_t) & (n_maj == n_p_maj)
    long = n_t >= min_hits
    purity = real & (2 * n_maj > n_t) & long
    xyz = (event.hits[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    tracks = pd.DataFrame({"track_id": m.track_id, "nhits": n_t,
                           "eta": group_eta(m.track_index_h, len(n_t), *xyz),
                           "majority_particle_id": maj, "majority_nhits": n_maj,
                           "dm_particle_id": np.where(dm, maj, 0), "purity_matched": purity})

    n_all = len(m.particle_id)
    kin = particle_table(truth=event.truth, particles=event.particles).reindex(m.particle_id)
    particles = pd.DataFrame({
        "particle_id": m.particle_id, "nhits": m.particle_nhits,
        "pt": kin["pt"].to_numpy(), "eta": kin["eta"].to_numpy(),
        "dm_matched": np.bincount(m.maj_index[dm & long], minlength=n_all) > 0,
        "perfect": np.bincount(m.maj_index[perfect & long], minlength=n_all) > 0,
        "n_purity_tracks": np.bincount(m.maj_index[purity], minlength=n_all),
    })
    particles = particles[particles["particle_id"] != 0].reset_index(drop=True)
    return EventMatch(event_id=event.event_id, score=score, min_hits=min_hits, particles=particles,
                      tracks=tracks)
