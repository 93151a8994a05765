"""``trackformers convert INPUT OUT --to csv|root|parquet``: convert events between the supported formats.

Events stream one at a time (reader -> writer) behind a tqdm progress bar. All output is first written into a
hidden temporary folder beside ``OUT`` and moved into place only after the last event, so bad input (or an
interrupt) leaves no partial output.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trackformers.commands._options import parse_volumes
from trackformers.errors import InputError
from trackformers.events import Event

NAME = "convert"
HELP = "Convert events between TrackML CSV, ACTS ROOT and event-partitioned Parquet."
TARGETS = ("csv", "csv.gz", "root", "parquet")



def parse_events(text: str | None) -> list[int] | None:
    """``"1000-1009,1020"`` -> event ids (ranges inclusive); None keeps all."""
    if text is None:
        return None
    out: list[int] = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        lo, sep, hi = item.partition("-")
        try:
            a, b = int(lo), int(hi if sep else lo)
        except ValueError:
            raise InputError(f"--events item {item!r} is not an id or a range like 1000-1009.") from None
        if b < a:
            raise InputError(f"--events range {item!r} is empty; expected FIRST-LAST with FIRST <= LAST.")
        out.extend(range(a, b + 1))
    if not out:
        raise InputError(f"--events {text!r} selects no event.")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="file, folder, glob or TrackML event prefix")
    parser.add_argument("out", help="output folder (csv, parquet, root) or .root file (root)")
    parser.add_argument("--to", required=True, choices=TARGETS, help="output format")
    parser.add_argument("--from", dest="source_format", choices=("trackml", "root", "parquet"),
                        help="force the input format (default: detect from extension and content)")
    parser.add_argument("--volumes", help="volume ids or groups, e.g. 7,8,9 or pixel (default: all)")
    parser.add_argument("--events", help="event ids or ranges, e.g. 1000-1009,1020 (default: all)")
    parser.add_argument("--smear", action="store_true",
                        help="ROOT input: smear true hit positions with the detector resolutions")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _progress(events: Iterator[Event], total: int | None, quiet: bool) -> Iterator[Event]:
    from tqdm import tqdm

    with tqdm(events, total=total, unit="event", desc="convert", disable=quiet) as bar:
        for event in bar:
            bar.set_postfix(hits=len(event.hits))
            yield event


def convert(inputs: str | os.PathLike[str], out: str | os.PathLike[str], *, to: str, volumes=None,  # noqa: ANN001
            events=None, source_format: str | None = None, quiet: bool = True,  # noqa: ANN001
            **options: object) -> list[Path]:
    """Convert events; returns the final output paths. Nothing appears at ``out`` unless all succeeded."""
    from trackformers.io import formats, read_events

    if to not in TARGETS:
        raise InputError(f"--to {to!r} is not a known format; expected one of {', '.join(TARGETS)}.")
    out = Path(out)
    if options.get("smear") and source_format not in (None, "root"):
        raise InputError("--smear applies to ROOT input only.")
    if not options.get("smear"):
        options.pop("smear", None)
    stream = read_events(inputs, volumes=volumes, events=events, format=source_format, **options)
    total = None if events is None else len(set(events))
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        staged = stage / out.name
        module = formats()["trackml" if to.startswith("csv") else to]
        progress = _progress(stream, total, quiet)
        if to.startswith("csv"):
            written = module.write(progress, staged, compress=to == "csv.gz")
        else:
            written = module.write(progress, staged)
        finals = []
        for path in written:
            final = out.parent / Path(path).relative_to(stage)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, final)
            finals.append(final)
        return finals
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    paths = convert(args.input, args.out, to=args.to, volumes=parse_volumes(args.volumes),
                    events=parse_events(args.events), source_format=args.source_format, quiet=args.quiet,
                    smear=args.smear)
    print(f"wrote {len(paths)} file(s) under {args.out}")
    return 0
