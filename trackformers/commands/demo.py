"""``trackformers demo``: the main job end to end on a few simulated pixel events, CPU friendly.

Simulate events with the built-in engine (pixel volumes 7, 8, 9; the default seed is never used in
training), write them as TrackML CSV, reconstruct them with the shipped ``mu20`` pipeline (``best.ckpt``, track
cleaning, ``selector_mu20.pt``: ``reconstruct --pipeline mu20``) or, with ``--checkpoint``, with that model alone,
print the summary and the metrics table, and write submissions, ``metrics.json`` and the evaluation plots under
``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo"
HELP = "simulate a few pixel events, reconstruct them with the shipped pipeline, print metrics, plot"
PIXEL_VOLUMES = (7, 8, 9)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trackformers.commands.reconstruct import add_common

    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    parser.add_argument("--events", type=int, default=3, help="number of events to simulate")
    parser.add_argument("--pileup", type=float, default=20.0, help="pile-up mu")
    parser.add_argument("--seed", type=int, default=12345, help="simulation seed (never used in training)")
    add_common(parser)
    parser.add_argument("--no-plots", action="store_true", help="skip the plots")


def run(args: argparse.Namespace) -> int:
    from trackformers.commands._options import parse_backend
    from trackformers.commands.reconstruct import PIPELINES, make_clusterer, parse_params, print_metrics
    from trackformers.errors import InputError
    from trackformers.inference import (
        CHECKPOINT_DIR,
        default_checkpoint,
        load_tracker,
        reconstruct_files,
        resolve_device,
    )
    from trackformers.io import write_events
    from trackformers.io.atomic import check_destination
    from trackformers.simulation import simulate

    if args.events < 1:
        raise InputError(f"--events {args.events}: expected at least 1 event.")
    parse_backend(args.backend)
    parse_params(args.param)
    check_destination(args.out, option="--out", folder=True)
    # Resolve the model first: a missing checkpoint should fail before any simulation work.
    if args.checkpoint:  # that model alone (a selector belongs to the model it was trained behind)
        checkpoint, clean, selector, what = Path(args.checkpoint), None, None, args.checkpoint
    else:  # the shipped mu20 pipeline: its checkpoint, cleaning and selector
        from trackformers.clustering.selection import TrackSelector

        default_checkpoint()  # no shipped checkpoint at all: its own message, before any other work
        checkpoint = CHECKPOINT_DIR / PIPELINES["mu20"]["checkpoint"]
        selector_path = CHECKPOINT_DIR / PIPELINES["mu20"]["selector"]
        clean, selector = {}, TrackSelector.load(selector_path)
        what = f"{checkpoint} + --clean + {selector_path} (--pipeline mu20)"
    device = resolve_device(args.device)
    module = load_tracker(checkpoint, device, backend=args.backend)
    clusterer = make_clusterer(args, module)  # after the model: --param alone applies to its clusterer
    out = Path(args.out)
    print(f"simulating {args.events} pixel events (pile-up {args.pileup:g}, seed {args.seed}) ...")
    events = list(simulate(args.events, seed=args.seed, pileup=args.pileup, volumes=PIXEL_VOLUMES))
    write_events(events, out / "events", format="csv")
    print(f"reconstructing with {what} on {device} ...")
    summary = reconstruct_files([out / "events"], module=module, out_dir=out / "submissions",
                                clusterer=clusterer, volumes=PIXEL_VOLUMES, evaluate=True, device=device,
                                precision=args.precision, clean=clean, selector=selector)
    print(summary.format())
    print_metrics(summary.metrics)
    _write_metrics(summary.metrics, out / "metrics.json")
    if not args.no_plots:
        _plots(events, summary, out / "plots")
    print(f"wrote {out}/submissions/, {out}/metrics.json" + ("" if args.no_plots else f", {out}/plots/"))
    return 0


def _write_metrics(metrics: dict | None, path: Path) -> None:
    if metrics is None:
        return
    from trackformers.io.atomic import atomic_path
    from trackformers.metrics import to_json

    with atomic_path(path) as tmp:
        tmp.write_text(to_json(metrics) + "\n")


def _plots(events: list, summary: object, out_dir: Path) -> None:
    """The evaluation plots, when the plotting module is available (it is optional for this command)."""
    try:
        from trackformers.plots import write_evaluation_plots
    except ImportError:
        print("plots skipped: trackformers.plots.write_evaluation_plots is not available.")
        return
    from trackformers.io.submission import read_submission

    by_name = {p.name: p for p in summary.written}
    subs = [read_submission(by_name[f"{e.name}-submission.csv"]) for e in events]
    write_evaluation_plots(events=events, submissions=subs, summary=summary.metrics, out_dir=out_dir)
