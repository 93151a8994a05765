"""Time of the metrics on one ~100k-hit event, and the vectorised score against a plain-Python loop.

Usage: ``python benchmarks/metrics.py [--repeats 15] [--pileup 200]``

The event comes from the built-in simulator (``simulate_event(seed=0, pileup=200)``). Submissions: "perfect"
(one track per particle, one per noise hit) and "noisy" (the perfect one with 20 % of the hits moved to a
random track). The table reports the median wall time over ``repeats``; the reference row is the challenge's
algorithm as a plain Python loop over hits (run once: it is the slow one), with its ratio to the vectorised
``score_event`` measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

from machine import cpu_name  # benchmarks/machine.py (scripts run from this folder's path)


def _median(fn, repeats: int) -> float:  # noqa: ANN001 - a thunk
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    import numpy as np
    import pandas as pd

    from trackformers.metrics import (
        binned_efficiency,
        evaluate_event,
        hit_weights,
        match_event,
        score_event,
    )
    from trackformers.metrics.reference import reference_score
    from trackformers.simulation import simulate_event

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--pileup", type=float, default=200.0)
    args = parser.parse_args(argv)

    event = simulate_event(seed=0, pileup=args.pileup, event_id=0)
    truth = event.truth
    pid = truth["particle_id"].to_numpy(np.int64)
    track = pid.copy()
    noise = pid == 0
    track[noise] = -1 - np.arange(noise.sum())
    perfect = pd.DataFrame({"hit_id": truth["hit_id"].to_numpy(np.int64), "track_id": track})
    rng = np.random.default_rng(0)
    noisy = perfect.copy()
    moved = rng.random(len(noisy)) < 0.2
    noisy.loc[moved, "track_id"] = rng.choice(np.unique(track), moved.sum())
    weights = hit_weights(truth=truth, particles=event.particles)

    reps = args.repeats
    rows = [("hit_weights", _median(lambda: hit_weights(truth=truth, particles=event.particles), reps))]
    for name, sub in (("perfect", perfect), ("noisy", noisy)):
        rows.append((f"score_event ({name})",
                     _median(lambda s=sub: score_event(truth=truth, submission=s, weights=weights), reps)))
        rows.append((f"evaluate_event ({name})",
                     _median(lambda s=sub: evaluate_event(event=event, submission=s), args.repeats)))
    match = match_event(event=event, submission=noisy)
    rows.append(("binned_efficiency vs pT (1 event)",
                 _median(lambda: binned_efficiency(var="pt", matches=[match]), args.repeats)))
    merged = truth[["hit_id", "particle_id"]].merge(noisy, on="hit_id")
    fast = score_event(truth=truth, submission=noisy, weights=weights)
    t0 = time.perf_counter()
    ref = reference_score(merged["particle_id"].tolist(), merged["track_id"].tolist(), weights.tolist())
    t_ref = time.perf_counter() - t0
    assert abs(fast - ref) < 1e-9, (fast, ref)
    t_fast = dict(rows)["score_event (noisy)"]
    rows.append(("reference loop score (noisy, 1 run)", t_ref))

    import numpy
    import pandas

    print(f"# {datetime.date.today()}  {cpu_name()}  Python {platform.python_version()}  "
          f"numpy {numpy.__version__}  pandas {pandas.__version__}")
    print(f"# event: simulate_event(seed=0, pileup={args.pileup:g}): {len(event.hits)} hits, "
          f"{truth['particle_id'].nunique() - 1} particles; median of {args.repeats}")
    print("| function | time (ms) |")
    print("| --- | ---: |")
    for name, t in rows:
        print(f"| {name} | {1e3 * t:.1f} |")
    print(f"\nscore (noisy) = {fast:.6f} (reference {ref:.6f}); "
          f"reference loop / score_event = {t_ref / t_fast:.1f}x")


if __name__ == "__main__":
    main()
