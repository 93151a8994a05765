"""Time to load one ~100k-hit event (hits + truth + particles, validated) from each format.

Usage: ``python benchmarks/readers.py [--repeats 5] [--pileup 200] [--events 8]``

The event comes from the built-in simulator (``simulate_event(seed=0, pileup=200)``, ~106k hits in all
volumes). It is written once per format into a temporary folder, then ``read_events`` loads it ``repeats``
times; the table reports the median wall time. "one of N" rows read the last event of an N-event file
(copies of the event with other ids) to show that selecting an event reads only its entries / row group.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import tempfile
import time
from pathlib import Path

from machine import cpu_name  # benchmarks/machine.py (scripts run from this folder's path)


def _size(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 2**20


def main(argv: list[str] | None = None) -> None:
    import os

    import awkward
    import pandas
    import pyarrow
    import uproot

    from trackformers.events import Event
    from trackformers.io import formats, read_events
    from trackformers.simulation import simulate_event

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pileup", type=float, default=200.0)
    parser.add_argument("--events", type=int, default=8, help="events in the multi-event files")
    args = parser.parse_args(argv)

    event = simulate_event(seed=0, pileup=args.pileup, event_id=0)
    mods = formats()
    copies = [Event(i, event.hits, event.truth, event.particles) for i in range(args.events)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = {
            "CSV": (mods["trackml"].write([event], tmp / "csv"), {}),
            "CSV.gz": (mods["trackml"].write([event], tmp / "csvgz", compress=True), {}),
            "ROOT (TTree)": (mods["root"].write([event], tmp / "one.root"), {}),
            "Parquet": (mods["parquet"].write([event], tmp / "pq"), {}),
            f"ROOT, 1 of {args.events}": (mods["root"].write(copies, tmp / "many.root"),
                                          {"events": [args.events - 1]}),
            f"Parquet, 1 of {args.events}": (mods["parquet"].write(copies, tmp / "manypq"),
                                             {"events": [args.events - 1]}),
        }
        for name, (paths, kw) in cases.items():
            target = paths[0] if paths[0].suffix == ".root" else paths[0].parent
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                (loaded,) = read_events(target, **kw)
                times.append(time.perf_counter() - t0)
            assert len(loaded.hits) == len(event.hits)
            rows.append((name, len(loaded.hits), _size(paths), statistics.median(times), min(times)))

    print(f"date {datetime.date.today()}, CPU {cpu_name()} ({os.cpu_count()} cores), Python "
          f"{platform.python_version()}, pandas {pandas.__version__}, pyarrow {pyarrow.__version__}, uproot "
          f"{uproot.__version__}, awkward {awkward.__version__}; median of {args.repeats}")
    print("| format | hits | size on disk (MiB) | median load (s) | min (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, n, size, med, best in rows:
        print(f"| {name} | {n} | {size:.1f} | {med:.3f} | {best:.3f} |")


if __name__ == "__main__":
    main()
