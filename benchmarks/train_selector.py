"""Train a track selector (trackformers.clustering.selection) on reconstructed events with truth.

Each ``--train`` / ``--val`` pair names a folder of TrackML events with truth and the folder of submissions
that ``trackformers reconstruct`` wrote for them (``<event>-submission.csv``). Every track of >= 3 hits is
labelled real when a particle matches it by double majority (the fake-rate definition, docs/metrics.md).
The selector is trained on the --train tracks, then each cut of --cuts is applied to the --val events and
measured; the chosen cut is the lowest fake rate whose DM efficiency is within --max-eff-loss of the
efficiency without selection. Writes the selector (``--out``) and a JSON record beside it.

    python benchmarks/train_selector.py --train EV SUB --train EV2 SUB2 --val VAL_EV VAL_SUB \
        --out data/checkpoints/selector.pt
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trackformers.clustering.selection import fit_selector, select_submission
from trackformers.clustering.track_features import FEATURES, hit_columns, track_features
from trackformers.errors import InputError
from trackformers.inference import output_path
from trackformers.io.atomic import atomic_path
from trackformers.io.submission import read_submission
from trackformers.io.trackml import prefixes, read_event
from trackformers.metrics import evaluate_event
from trackformers.metrics.matching import match_event


def load_pairs(events: str, subs: str, *, truth: bool = True) -> list[tuple]:
    """(event, submission) for every event of folder ``events`` (with truth when ``truth``) and its submission."""
    pairs = []
    for prefix in prefixes(Path(events)):
        event = read_event(prefix, cells=False)
        if truth and event.truth is None:
            raise InputError(f"{prefix}: no truth; expected events with truth to label the tracks.")
        path = output_path(Path(subs), event, "csv")
        if not path.is_file():
            raise InputError(f"{path}: no such submission; expected `trackformers reconstruct {events} --out "
                             f"{subs}` first.")
        pairs.append((event, read_submission(path, event_id=event.event_id)))
    if not pairs:
        raise InputError(f"{events}: no TrackML events found.")
    return pairs


def labelled(event, sub: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Features (T, F) of the submission's tracks of >= 3 hits and whether each is DM-matched (T,)."""
    x, y, z, layer = hit_columns(event.hits, sub["hit_id"].to_numpy(), where=str(event.source), need_layer=True)
    ids, feats = track_features(x, y, z, layer, sub["track_id"].to_numpy(np.int64))
    tracks = match_event(event=event, submission=sub).tracks.set_index("track_id")
    return feats, tracks.loc[ids, "dm_particle_id"].to_numpy() != 0


def measure(pairs: list[tuple], selector=None) -> dict[str, float]:
    """Mean metrics over events of the submissions, after ``selector`` when given."""
    rows = [evaluate_event(event=ev, submission=sub if selector is None else
                           select_submission(ev.hits, sub, selector)) for ev, sub in pairs]
    mean = pd.DataFrame(rows).mean(numeric_only=True)
    return {k: round(float(mean[k]), 4) for k in ("dm_efficiency", "fake_rate", "duplicate_rate",
                                                   "perfect_efficiency", "trackml_score")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", nargs=2, action="append", required=True, metavar=("EVENTS", "SUBMISSIONS"))
    p.add_argument("--val", nargs=2, action="append", required=True, metavar=("EVENTS", "SUBMISSIONS"))
    p.add_argument("--out", required=True, help="selector file to write")
    p.add_argument("--cuts", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7")
    p.add_argument("--max-eff-loss", type=float, default=0.01, help="DM efficiency the chosen cut may cost")
    p.add_argument("--epochs", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        cuts = [float(c) for c in args.cuts.split(",")]
    except ValueError:
        cuts = []
    if not cuts or not all(0.0 <= c < 1.0 for c in cuts):
        p.error(f"--cuts {args.cuts}: expected comma-separated probabilities in [0, 1), e.g. 0.2,0.5")
    if args.epochs < 1:
        p.error(f"--epochs {args.epochs}: expected >= 1")
    torch.set_num_threads(2)
    try:
        return run(args, cuts)
    except InputError as err:
        print(f"train_selector: error: {err}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, cuts: list[float]) -> int:
    """Train, measure, choose the cut, write; returns the exit status."""
    train = [pair for ev, sub in args.train for pair in load_pairs(ev, sub)]
    val = [pair for ev, sub in args.val for pair in load_pairs(ev, sub)]
    feats, real = (np.concatenate(a) for a in zip(*(labelled(ev, sub) for ev, sub in train)))
    t0 = time.perf_counter()
    selector = fit_selector(feats, real, epochs=args.epochs, seed=args.seed)
    seconds = time.perf_counter() - t0
    print(f"trained on {len(real)} tracks of {len(train)} events ({int((~real).sum())} fake) in {seconds:.1f} s, "
          f"final loss {selector.final_loss:.4f}")
    base = measure(val)
    table = [{"cut": None, **base}]
    print(f"{'cut':>6} {'DM eff':>7} {'fake':>7} {'dup':>7} {'perfect':>8} {'score':>7}")
    for cut in [None, *cuts]:
        if cut is not None:
            selector.cut = cut
            table.append({"cut": cut, **measure(val, selector)})
        r = table[-1]
        print(f"{'none' if cut is None else cut:>6} {r['dm_efficiency']:>7.4f} {r['fake_rate']:>7.4f} "
              f"{r['duplicate_rate']:>7.4f} {r['perfect_efficiency']:>8.4f} {r['trackml_score']:>7.4f}")
    allowed = [r for r in table[1:] if r["dm_efficiency"] >= base["dm_efficiency"] - args.max_eff_loss]
    chosen = min(allowed, key=lambda r: r["fake_rate"])["cut"] if allowed else None
    if chosen is None:
        print(f"no cut keeps the DM efficiency within {args.max_eff_loss}; nothing written", file=sys.stderr)
        return 1
    selector.cut = chosen
    record = {"features": list(FEATURES), "train": [[Path(e).name, Path(s).name] for e, s in args.train],
              "val": [[Path(e).name, Path(s).name] for e, s in args.val], "train_tracks": int(len(real)),
              "train_fake_tracks": int((~real).sum()), "epochs": args.epochs, "seed": args.seed,
              "train_seconds": round(seconds, 1), "rule": f"lowest fake rate within {args.max_eff_loss} of the "
              "DM efficiency without selection", "cut": chosen, "val_table": table, "torch": str(torch.__version__),
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    selector.save(args.out, **record)
    with atomic_path(Path(args.out).with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    print(f"chosen cut {chosen}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
