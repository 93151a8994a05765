"""``trackformers evaluate EVENTS SUBMISSIONS``: score submissions against events with truth.

EVENTS is anything :func:`trackformers.io.read_events` accepts (TrackML CSV, ROOT, Parquet; files, folders,
globs, prefixes). SUBMISSIONS is what ``reconstruct`` writes: its ``--out`` folder of
``<event>-submission.csv[.gz]`` files or of the Parquet data set ``submission.parquet/<event>.parquet``, or that
data set folder itself; or one CSV or Parquet file with an ``event_id`` column. Prints the metrics table (means
over events, pooled counts); ``--json`` writes the summary (top-level ``trackml_score, dm_efficiency,
perfect_efficiency, fake_rate, duplicate_rate``, ``pooled``, ``binned``, ``per_event``) atomically; ``--plots
DIR`` writes the evaluation plots. Both destinations are checked before any work.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from trackformers.errors import InputError
from trackformers.events import Event

NAME = "evaluate"
HELP = "TrackML score, DM/perfect efficiency, fake and duplicate rates of submissions against truth."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", help="events with truth: file, folder, glob or TrackML event prefix")
    parser.add_argument("submissions",
                        help="reconstruct's --out folder (<event>-submission.csv files or the Parquet data set "
                             "submission.parquet/), that data set, or one CSV or Parquet file with an event_id "
                             "column")
    parser.add_argument("--json", metavar="OUT", help="write the summary as JSON to OUT")
    parser.add_argument("--pt-min", type=float, default=0.9,
                        help="reconstructable pT cut in GeV (default 0.9)")
    parser.add_argument("--eta-max", type=float, default=4.0, help="reconstructable |eta| cut (default 4)")
    parser.add_argument("--min-hits", type=int, default=3,
                        help="minimum hits of a reconstructable particle and of a counted track (default 3)")
    parser.add_argument("--volumes", help="evaluate only hits of these volumes, e.g. 7,8,9 or pixel")
    parser.add_argument("--plots", metavar="DIR", help="write efficiency/rate/score plots into DIR")


class Submissions:
    """Submissions by event: a folder of per-event files (CSV or Parquet, :func:`~trackformers.io.submission.
    find_submission`), or one CSV or Parquet file holding an ``event_id`` column."""

    def __init__(self, path: str | Path) -> None:
        from trackformers.io.submission import read_submission

        self.path = Path(path)
        self.used: set[int] = set()
        self.table: dict[int, pd.DataFrame] | None = None
        if not self.path.exists():
            raise InputError(f"{self.path}: no such submission file or folder.")
        if self.path.is_file():
            df = read_submission(self.path)
            self.table = {int(k): g.reset_index(drop=True) for k, g in df.groupby("event_id", sort=True)}
            for g in self.table.values():
                g.attrs["source"] = str(self.path)

    def get(self, event: Event) -> pd.DataFrame:
        """The submission of ``event``; InputError naming the expected file or event id if there is none."""
        from trackformers.io.submission import PARQUET_DATASET, find_submission, read_submission

        self.used.add(event.event_id)
        if self.table is not None:
            if event.event_id not in self.table:
                raise InputError(f"{self.path}: no rows with event_id {event.event_id}; expected a track for "
                                 f"every hit of {event.name}.")
            return self.table[event.event_id]
        found = find_submission(self.path, event.name)
        if found is None:
            csv = self.path / f"{event.name}-submission.csv"
            dataset = self.path if self.path.suffix == ".parquet" else self.path / PARQUET_DATASET
            raise InputError(f"{self.path}: no submission for {event.name}; expected {csv} or "
                             f"{dataset / (event.name + '.parquet')}.")
        return read_submission(found, event_id=event.event_id)

    def unused(self) -> list[int]:
        """Event ids with a submission but no event (single-CSV input only)."""
        return [] if self.table is None else sorted(set(self.table) - self.used)


def evaluate(events_path: str, submissions_path: str, *, pt_min: float = 0.9, eta_max: float = 4.0,
             min_hits: int = 3, volumes: list[int] | None = None, keep: bool = False
             ) -> tuple[dict, list[Event], list[pd.DataFrame]]:
    """Summary over all events (see :func:`trackformers.metrics.summarize`), + events/submissions if ``keep``.

    With ``volumes``, submission rows of hits outside the selected volumes are dropped first.
    """
    from trackformers.io import read_events
    from trackformers.io.submission import check_submission
    from trackformers.metrics import binned_efficiency, binned_rates, match_event, rates_of, summarize

    subs = Submissions(submissions_path)
    per_event, matches, kept_events, kept_subs = [], [], [], []
    for event in read_events(events_path, volumes=volumes):
        sub = subs.get(event)
        if volumes is not None:
            source = sub.attrs.get("source")
            sub = sub[sub["hit_id"].isin(event.hits["hit_id"])].reset_index(drop=True)
            sub.attrs["source"] = source
        check_submission(event, sub)
        match = match_event(event=event, submission=sub, min_hits=min_hits)
        per_event.append(rates_of(match, pt_min=pt_min, eta_max=eta_max))
        matches.append(match)
        if keep:
            kept_events.append(event)
            kept_subs.append(sub)
    if not per_event:
        raise InputError(f"{events_path}: no events to evaluate.")
    if subs.unused():
        print(f"trackformers: note: {len(subs.unused())} event id(s) in {subs.path} have no event in "
              f"{events_path} and were ignored (first: {subs.unused()[0]}).", file=sys.stderr)
    config = {"pt_min": pt_min, "eta_max": eta_max, "min_hits": min_hits,
              "volumes": None if volumes is None else list(volumes)}
    summary = summarize(per_event, config=config)
    summary["binned"] = {
        "efficiency_pt": binned_efficiency(var="pt", matches=matches, pt_min=pt_min, eta_max=eta_max,
                                           min_hits=min_hits).to_dict(orient="records"),
        "efficiency_eta": binned_efficiency(var="eta", matches=matches, pt_min=pt_min, eta_max=eta_max,
                                            min_hits=min_hits).to_dict(orient="records"),
        "rates_eta": binned_rates(matches=matches, min_hits=min_hits).to_dict(orient="records"),
    }
    # per_event stays the last key, as the JSON's readers expect the headline numbers first
    summary["per_event"] = summary.pop("per_event")
    return summary, kept_events, kept_subs


def run(args: argparse.Namespace) -> int:
    from trackformers.commands._options import parse_volumes
    from trackformers.io.atomic import atomic_path, check_destination
    from trackformers.metrics import format_table, to_json

    if args.min_hits < 1:
        raise InputError(f"--min-hits {args.min_hits}: expected a positive number of hits.")
    if not (math.isfinite(args.pt_min) and args.pt_min >= 0):
        raise InputError(f"--pt-min {args.pt_min}: expected a finite pT cut >= 0 GeV.")
    if not args.eta_max > 0:
        raise InputError(f"--eta-max {args.eta_max}: expected a positive |eta| cut.")
    # the destinations before the work: a refusal after the table is printed reads as a failed evaluation
    if args.json:
        check_destination(args.json, option="--json", folder=False)
    if args.plots:
        check_destination(args.plots, option="--plots", folder=True)
    plots = None
    if args.plots:
        try:
            import trackformers.plots as plots
        except ModuleNotFoundError as err:
            if not (err.name or "").startswith("trackformers"):
                raise
            raise InputError("--plots needs the trackformers.plots module, which this installation lacks; "
                             "run without --plots.") from None
    summary, events, subs = evaluate(args.events, args.submissions, pt_min=args.pt_min, eta_max=args.eta_max,
                                     min_hits=args.min_hits, volumes=parse_volumes(args.volumes),
                                     keep=plots is not None)
    print(format_table(summary))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(to_json(summary) + "\n")
        print(f"wrote {args.json}")
    if plots is not None:
        paths = plots.write_evaluation_plots(events=events, submissions=subs, summary=summary,
                                             out_dir=args.plots, pt_min=args.pt_min, eta_max=args.eta_max,
                                             min_hits=args.min_hits)
        print(f"wrote {len(paths)} plot file(s) under {args.plots}")
    return 0
