"""The TrackML score of one event, exactly as the challenge's ``score_event``.

For every track take its majority particle (most hits; tie → lower particle_id; noise may win). The track is
good iff n_maj / n_track > 0.5 and n_maj / n_particle > 0.5 (both strict; n_particle counts the particle's
truth rows). score = Σ over good tracks of the weight of the majority particle's hits in the track, divided
by the total truth weight (1 for challenge weights). NaN when the total weight is 0 (nothing to score).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackformers.errors import InputError
from trackformers.metrics.matching import align, good_tracks, majority


def score_event(*, truth: pd.DataFrame, submission: pd.DataFrame, weights: np.ndarray | None = None) -> float:
    """TrackML score in [0, 1] of ``submission[hit_id, track_id]`` against ``truth``.

    Args:
        truth: ``hit_id, particle_id`` and ``weight`` (unless ``weights`` is given), one row per hit.
        submission: one row per hit of ``truth`` (extra hit ids are ignored, as in the challenge).
        weights: per-truth-row weights, shape ``(len(truth),)``, overriding ``truth["weight"]``.
    """
    if weights is None:
        if "weight" not in truth.columns:
            raise InputError("truth: missing column weight; expected TrackML hit weights (or pass weights=).")
        weights = truth["weight"].to_numpy(np.float64)
    weights = np.asarray(weights, np.float64)
    track_h = align(truth["hit_id"].to_numpy(np.int64), submission, where=submission.attrs.get("source",
                                                                                             "submission"))
    m = majority(track_h=track_h, particle_h=truth["particle_id"].to_numpy(np.int64), weight_h=weights)
    total = weights.sum()
    return float(m.maj_weight[good_tracks(m)].sum() / total) if total > 0 else float("nan")
