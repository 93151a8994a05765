"""Does helix-consistency track cleaning (trackformers/clustering/cleaning.py) help the shipped model?

Simulates events (built-in engine, pixel volumes 7, 8, 9), reconstructs each ONCE with the checkpoint
(``module.reconstruct``: the model's default clusterer, HDBSCAN for best.ckpt), then scores the submission
without cleaning (``none``) and after :func:`clean_tracks` for every cut of a grid, with
:func:`trackformers.metrics.evaluate_event`. Prints, per μ and cut: the mean over events of DM efficiency,
perfect efficiency, fake rate, duplicate rate, TrackML score, the tracks of >= 3 hits and the cleaning time
(ms per event).
Submissions can be cached (``--cache DIR``) so a second grid needs no new reconstruction. Example::

    OMP_NUM_THREADS=1 python benchmarks/cleaning.py --seed 1000010 --pileups 0:5,20:3,200:1 \
        --transverse 0.5,1,2,5 --z 2,5,10 --reject both --log benchmarks/results/cleaning_cpu.log

Fragment merging and the one-radius rule (``--merge 0,2 --merge-chi2 36 --sigma-t 1 --sigma-z 5 --one-radius
both``: benchmarks/results/cleaning_merge_cpu.log). Run from the repository root with ``PYTHONPATH=.``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import torch

from trackformers.clustering.cleaning import clean_submission
from trackformers.metrics import evaluate_event
from trackformers.simulation import simulate
from trackformers.training.module import TrackingModule

KEYS = ("dm_efficiency", "perfect_efficiency", "fake_rate", "duplicate_rate", "trackml_score", "n_tracks_min_hits")


def submission_of(module: TrackingModule, event: Any, cache: Path | None, tag: str) -> tuple[pd.DataFrame, float]:
    """The model's submission for ``event`` (from ``cache/tag.parquet`` when there) and its seconds (NaN if cached)."""
    path = cache / f"{tag}.parquet" if cache is not None else None
    if path is not None and path.is_file():
        return pd.read_parquet(path), float("nan")
    t0 = time.perf_counter()
    with torch.no_grad():
        sub = module.reconstruct(event)
    seconds = time.perf_counter() - t0
    if path is not None:  # atomically: a killed run must not leave a partial file that is read back later
        from trackformers.io.atomic import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            sub.to_parquet(tmp, index=False)
    return sub, seconds


def cleaned(event: Any, sub: pd.DataFrame, cut: dict[str, Any]) -> tuple[pd.DataFrame, float]:
    """``sub`` after cleaning with ``cut`` (hit positions from the event's hits table) and the seconds it took."""
    t0 = time.perf_counter()
    out = clean_submission(event.hits, sub, **cut)
    return out, time.perf_counter() - t0


def label(cut: dict[str, Any] | None) -> str:
    if cut is None:
        return "none"
    return (f"t{cut['max_transverse_mm']:g}_z{cut['max_z_mm']:g}_it{cut['iterations']}"
            + ("_reject" if cut["reject"] else "") + (f"_split{cut['split']}" if cut["split"] else "")
            + (f"_m{cut['merge']}_c{cut['merge_chi2']:g}_s{cut['sigma_transverse_mm']:g}/{cut['sigma_z_mm']:g}"
               + ("_fit" if cut["merge_fit"] else "") if cut["merge"] else "")
            + ("_1r" if cut["drop_one_radius"] else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="data/checkpoints/best.ckpt")
    parser.add_argument("--seed", type=int, default=1000010)
    parser.add_argument("--pileups", default="0:5,20:3,200:1", help="mu:events, comma separated")
    parser.add_argument("--transverse", default="0.5,1,2,5", help="max_transverse_mm values")
    parser.add_argument("--z", default="2,5,10", help="max_z_mm values")
    parser.add_argument("--iterations", default="2", help="iterations values")
    parser.add_argument("--reject", choices=("no", "yes", "both"), default="both")
    parser.add_argument("--split", default="0", help="split values (RANSAC splitting rounds)")
    parser.add_argument("--merge", default="0", help="merge values (fragment re-merging rounds)")
    parser.add_argument("--merge-chi2", default="16", help="merge_chi2 values (with merge > 0)")
    parser.add_argument("--sigma-t", default="0.1", help="sigma_transverse_mm values (with merge > 0)")
    parser.add_argument("--sigma-z", default="0.5", help="sigma_z_mm values (with merge > 0)")
    parser.add_argument("--merge-fit", choices=("no", "yes", "both"), default="no",
                        help="merge_fit: the joint helix fit also for tracks without a common layer")
    parser.add_argument("--one-radius", choices=("no", "yes", "both"), default="no",
                        help="drop_one_radius: dissolve tracks whose hits all sit at one radius")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default=None, help="folder for the model's submissions (reused)")
    parser.add_argument("--log", default=None, help="append the table (with date, command, versions) here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    module = TrackingModule.load_checkpoint(args.checkpoint, map_location="cpu").eval()
    def rejects_of(choice: str) -> list[bool]:
        return {"no": [False], "yes": [True], "both": [False, True]}[choice]

    rejects = rejects_of(args.reject)
    def values(text: str, kind: type) -> list[Any]:
        return [kind(v) for v in text.split(",")]

    merges = [(0, 16.0, 0.1, 0.5, False)] * ("0" in args.merge.split(",")) + list(itertools.product(
        [m for m in values(args.merge, int) if m], values(args.merge_chi2, float), values(args.sigma_t, float),
        values(args.sigma_z, float), rejects_of(args.merge_fit)))
    cuts: list[dict[str, Any] | None] = [None] + [
        {"max_transverse_mm": t, "max_z_mm": z, "iterations": it, "reject": rj, "split": sp, "merge": m[0],
         "merge_chi2": m[1], "sigma_transverse_mm": m[2], "sigma_z_mm": m[3], "merge_fit": m[4], "drop_one_radius": o}
        for t, z, it, rj, sp, m, o in itertools.product(values(args.transverse, float), values(args.z, float),
                                                        values(args.iterations, int), rejects,
                                                        values(args.split, int), merges, rejects_of(args.one_radius))]
    cache = Path(args.cache) if args.cache else None
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        git = "?"
    lines = [f"# command: OMP_NUM_THREADS={args.threads} python {' '.join(sys.argv)}",
             f"# date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, git {git}, host: CPU, "
             f"{args.threads} thread(s)",
             f"# versions: python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
             f"pandas {pd.__version__}, sklearn {sklearn.__version__}",
             f"# checkpoint {args.checkpoint}, clusterer {module.task.clusterer(None)!r}, seed {args.seed}"]
    print("\n".join(lines), flush=True)
    header = (f"{'mu':>4} {'cut':<40}{'dm_eff':>8}{'perfect':>8}{'fake':>8}{'dup':>8}"
              f"{'score':>8}{'tracks>=3':>11}{'clean ms':>10}")
    for item in args.pileups.split(","):
        mu, n = (float(item.split(":")[0]), int(item.split(":")[1]))
        rows: dict[str, list[dict[str, float]]] = {label(c): [] for c in cuts}
        for i, event in enumerate(simulate(n, seed=args.seed, pileup=mu, volumes=(7, 8, 9))):
            # the cache key names the checkpoint (its file name and size): another model never reuses it
            ckpt = Path(args.checkpoint)
            tag = f"{ckpt.stem}_{ckpt.stat().st_size}_seed{args.seed}_mu{mu:g}_ev{i}"
            sub, sec = submission_of(module, event, cache, tag)
            print(f"  mu={mu:g} event {i}: {len(event.hits)} hits, reconstruction {sec:.1f} s", flush=True)
            for cut in cuts:
                out, ms = (sub, 0.0) if cut is None else cleaned(event, sub, cut)
                res = evaluate_event(event=event, submission=out)
                rows[label(cut)].append({**{k: float(res[k]) for k in KEYS}, "ms": 1e3 * ms})
        block = [f"mu = {mu:g}: mean over {n} event(s)", header]
        for name, per in rows.items():
            m = {k: float(np.nanmean([p[k] for p in per])) for k in (*KEYS, "ms")}
            block.append(f"{mu:>4g} {name:<40}{m['dm_efficiency']:>8.4f}{m['perfect_efficiency']:>8.4f}"
                         f"{m['fake_rate']:>8.4f}"
                         f"{m['duplicate_rate']:>8.4f}{m['trackml_score']:>8.4f}{m['n_tracks_min_hits']:>11.1f}"
                         f"{m['ms']:>10.1f}")
        print("\n".join(block), flush=True)
        lines.extend(block)
    if args.log:
        with open(args.log, "a") as fh:
            fh.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
