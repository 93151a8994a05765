"""The TrackML challenge's score as a plain loop over hits: the obviously-correct reference that the vectorised
:func:`trackformers.metrics.score_event` is tested (``tests/metrics``) and timed (``benchmarks/metrics.py``)
against."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence


def reference_score(pid_h: Sequence[int], track_h: Sequence[int], w_h: Sequence[float]) -> float:
    """Score of one event from per-hit particle ids, track ids and weights (majority: most hits, tie → lower
    particle id; a track counts when its majority particle has > 50 % of the track's and of its own hits).
    NaN when the weights sum to 0."""
    n_p = Counter(pid_h)
    per_track = defaultdict(list)
    for p, t, w in zip(pid_h, track_h, w_h):
        per_track[t].append((p, w))
    total = sum(w_h)
    score = 0.0
    for hits in per_track.values():
        counts = Counter(p for p, _ in hits)
        maj = min(counts, key=lambda p: (-counts[p], p))
        if 2 * counts[maj] > len(hits) and 2 * counts[maj] > n_p[maj]:
            score += sum(w for p, w in hits if p == maj)
    return score / total if total > 0 else math.nan
