"""``trackformers simulate``: simulated events (built-in engine or ACTS Fatras) to CSV, ROOT or Parquet.

Event ``i`` of a run gets the seed ``event_seed(--seed, i)`` and the id ``--first-event-id + i``, so the
output does not depend on ``--workers``. Workers simulate in a process pool; the main process writes the
events in order, each file atomically, behind a tqdm progress bar.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trackformers.commands._options import parse_volumes
from trackformers.errors import InputError
from trackformers.events import Event

NAME = "simulate"
HELP = "Simulate TrackML-geometry events (built-in engine or ACTS Fatras) and write them to disk."
FORMATS = ("csv", "csv.gz", "root", "parquet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, required=True, help="number of events")
    parser.add_argument("--pileup", type=float, default=0.0,
                        help="pile-up μ: each event has 1 + Poisson(μ) interactions (default 0: one)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", default="csv", choices=FORMATS, help="output format (default csv)")
    parser.add_argument("--engine", default="builtin", choices=("builtin", "acts"),
                        help="simulation engine (acts needs pyacts)")
    parser.add_argument("--volumes", help="volume ids or groups, e.g. 7,8,9 or pixel (default: all)")
    parser.add_argument("--workers", type=int, default=1, help="simulation processes (default 1)")
    parser.add_argument("--first-event-id", type=int, default=0,
                        help="id of the first event, >= 0 (default 0)")
    parser.add_argument("--eta-max", type=float, help="|η| range of generated particles (default 3, max 4)")
    parser.add_argument("--noise", type=float, help="noise hits as a fraction of particle hits (default 0)")
    parser.add_argument("--efficiency", type=float, help="hit efficiency (default 0.98)")
    parser.add_argument("--beam-sigma-z", type=float, metavar="MM",
                        help="longitudinal σ of the beam spot in mm (default 55.5)")
    parser.add_argument("--hard-scatter", action="store_true",
                        help="make the first interaction a harder, ttbar-like one")
    parser.add_argument("--gun", type=int, metavar="N",
                        help="particle gun: N >= 1 particles instead of the first vertex (default: no gun)")
    parser.add_argument("--gun-pt", help="particle gun pT range in GeV, LOW,HIGH (default 1,10)")
    parser.add_argument("--no-scattering", action="store_true", help="switch multiple scattering off")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")



def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The engine options set on the command line (unset ones keep the engine's defaults)."""
    from trackformers.simulation.generator import MAX_PRIMARIES

    if args.gun is not None and not 1 <= args.gun <= MAX_PRIMARIES:
        # gun = 0 is the engine's "no gun", which a user asking for a gun of 0 particles does not mean
        raise InputError(f"--gun {args.gun}: expected 1 to {MAX_PRIMARIES} gun particles; leave --gun out to "
                         "simulate without a particle gun.")
    opts: dict[str, Any] = {}
    for name in ("eta_max", "noise", "efficiency", "gun", "beam_sigma_z"):
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    if args.gun_pt is not None:
        try:
            lo, hi = (float(v) for v in args.gun_pt.split(","))
        except ValueError:
            raise InputError(f"--gun-pt {args.gun_pt!r}: expected LOW,HIGH in GeV, e.g. 1,10.") from None
        opts["gun_pt"] = (lo, hi)
    if args.hard_scatter:
        opts["hard_scatter"] = True
    if args.no_scattering:
        opts["scattering"] = False
    return opts


def check_writable(out: Path) -> None:
    """InputError unless ``out`` is (or can be made) a folder we can create files in."""
    from trackformers.io.atomic import check_destination

    check_destination(out, option="--out", folder=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test."):
            pass
    except OSError as err:
        raise InputError(f"--out {out}: cannot write there ({err.strerror or err}).") from None


def _one(job: tuple[int, dict[str, Any]]) -> Event:
    """Worker: simulate event ``index`` (a top-level function, so process pools can pickle it)."""
    from trackformers.simulation import event_seed, simulate_event

    index, kw = job
    base = dict(kw)
    seed, first = base.pop("seed"), base.pop("first_event_id")
    return simulate_event(seed=event_seed(seed, index), event_id=first + index, **base)


def generate(n_events: int, *, workers: int = 1, **kw: Any) -> Iterator[Event]:
    """Events ``0..n_events-1`` in order, simulated by ``workers`` processes (1: in this process)."""
    jobs = ((i, kw) for i in range(n_events))
    if workers <= 1 or n_events == 1:
        yield from map(_one, jobs)
        return
    with multiprocessing.get_context().Pool(min(workers, n_events)) as pool:
        yield from pool.imap(_one, jobs, chunksize=1)


def simulate_to_disk(*, n_events: int, out: str | os.PathLike[str], fmt: str = "csv", workers: int = 1,
                     quiet: bool = True, seed: int = 0, pileup: float = 0.0, volumes: Any = None,
                     engine: str = "builtin", first_event_id: int = 0, **options: Any) -> list[Path]:
    """Validate everything, simulate and write; returns the written paths."""
    from tqdm import tqdm

    from trackformers.io import write_events
    from trackformers.simulation import simulate

    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}.")
    if workers < 1:
        raise InputError(f"--workers {workers}: expected at least 1.")
    if first_event_id < 0:  # a negative id names its files event-00000001-*, which no reader accepts
        raise InputError(f"--first-event-id {first_event_id}: expected an event id >= 0.")
    # Everything is checked before the progress bar starts: count, seed, μ, volumes, engine, options.
    simulate(n_events, seed=seed, pileup=pileup, volumes=volumes, engine=engine)
    from trackformers.simulation.builtin import Config

    # both engines take the built-in engine's options; the messages name the command-line options
    Config.from_options(options, names={k: "--" + k.replace("_", "-") for k in options})
    if engine == "acts":
        from trackformers.simulation import acts

        acts.require()
    out = Path(out)
    check_writable(out)
    events = generate(n_events, workers=workers, seed=seed, pileup=pileup, volumes=volumes, engine=engine,
                      first_event_id=first_event_id, **options)
    with tqdm(events, total=n_events, unit="event", desc="simulate", disable=quiet) as bar:
        def tracked() -> Iterator[Event]:
            for event in bar:
                bar.set_postfix(hits=len(event.hits))
                yield event

        if fmt == "csv.gz":
            from trackformers.io import trackml

            return trackml.write(tracked(), out, compress=True)
        return write_events(tracked(), out, format=fmt)


def run(args: argparse.Namespace) -> int:
    paths = simulate_to_disk(n_events=args.events, out=args.out, fmt=args.format, workers=args.workers,
                             quiet=args.quiet, seed=args.seed, pileup=args.pileup,
                             volumes=parse_volumes(args.volumes), engine=args.engine,
                             first_event_id=args.first_event_id, **engine_options(args))
    print(f"wrote {args.events} event(s), {len(paths)} file(s) under {args.out}")
    return 0
