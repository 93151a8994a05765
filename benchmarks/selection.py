"""Time track selection (features + MLP + dissolving) per event: ``select_submission`` on submissions on disk.

    python benchmarks/selection.py EVENTS SUBMISSIONS --selector data/checkpoints/selector_mu200.pt [--repeats 9]

EVENTS: a folder of TrackML events; SUBMISSIONS: the folder `trackformers reconstruct` wrote for them. Prints one
row per event: hits, tracks of >= 3 hits, tracks dissolved, and the median time of the repeats (ms).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch
from train_selector import load_pairs  # this folder: the events and their submissions, paired

from trackformers.clustering.selection import TrackSelector, select_submission
from trackformers.errors import InputError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("events")
    p.add_argument("submissions")
    p.add_argument("--selector", required=True)
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one CPU thread: the MLP is tiny, the features are numpy
    try:
        selector = TrackSelector.load(args.selector)
        print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
              f"torch {torch.__version__}, numpy {np.__version__}, selector {args.selector} (cut {selector.cut})")
        print(f"{'event':>10} {'hits':>7} {'tracks>=3':>9} {'dissolved':>9} {'ms (median)':>11}")
        for event, sub in load_pairs(args.events, args.submissions, truth=False):
            times = []
            for _ in range(max(args.repeats, 1)):
                t0 = time.perf_counter()
                out = select_submission(event.hits, sub, selector)
                times.append(time.perf_counter() - t0)
            long = sub["track_id"].value_counts()
            judged = long[long >= selector.min_hits].index
            kept = out[sub["track_id"].isin(judged).to_numpy()]["track_id"].value_counts()
            dissolved = len(judged) - int((kept >= selector.min_hits).sum())
            print(f"{event.event_id:>10} {len(event.hits):>7} {len(judged):>9} {dissolved:>9} "
                  f"{1e3 * float(np.median(times)):>11.1f}")
    except InputError as err:
        print(f"selection: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
