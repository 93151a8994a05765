"""Simulation speed (events/s per core) and event content, per engine, pile-up and detector selection.

Usage: ``python benchmarks/simulation.py [--engine builtin|acts|both] [--pileups 0,20,200] [--repeats 5]
[--json out.json]``

Each case simulates a batch of events (seeds 0, 1, … of ``simulate``) in this one process and thread, so
events/s is per core; the table reports the median over ``repeats`` batches of the wall-clock rate (and the
process-CPU rate beside it, which is what one core delivers when the machine is shared). Content columns
(hits per event, hits per particle with >= 1 hit, pixel share) are means over all simulated events. With
``--engine both`` (needs pyacts) the same seeds go through both engines and a side-by-side table of hits
per layer is printed too (the issue's goal: agreement within 10%).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

VOLUME_SETS = {"full": None, "pixel": (7, 8, 9)}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _batch_size(pileup: float) -> int:
    # about a second of work per batch for the built-in engine
    return 40 if pileup < 1 else 10 if pileup < 50 else 3


def run_case(engine: str, pileup: float, volumes: str, repeats: int) -> tuple[dict, list]:
    from trackformers.simulation import simulate

    n = _batch_size(pileup)
    rates, cpu_rates, events = [], [], []
    list(simulate(1, seed=10_000, pileup=pileup, volumes=VOLUME_SETS[volumes], engine=engine))  # warm-up
    for r in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        batch = list(simulate(n, seed=r, pileup=pileup, volumes=VOLUME_SETS[volumes], engine=engine))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rates.append(n / wall)
        cpu_rates.append(n / cpu)
        events.extend(batch)
    hits = [len(e.hits) for e in events]
    with_hits = [int((e.particles["nhits"] > 0).sum()) for e in events]
    pixel = [float(e.hits["volume_id"].isin([7, 8, 9]).mean()) for e in events]
    row = {"engine": engine, "pileup": pileup, "volumes": volumes, "events_per_batch": n, "repeats": repeats,
           "events_per_s": statistics.median(rates), "events_per_cpu_s": statistics.median(cpu_rates),
           "hits_per_event": statistics.mean(hits),
           "hits_per_particle": sum(hits) / max(1, sum(with_hits)), "pixel_share": statistics.mean(pixel)}
    return row, events


def per_layer(events: list) -> dict[tuple[int, int], float]:
    """Mean hits per event on each (volume, layer)."""
    import pandas as pd

    counts = pd.concat([e.hits.groupby(["volume_id", "layer_id"]).size() for e in events], axis=1).fillna(0)
    return {k: float(v) for k, v in counts.mean(axis=1).items()}


def main(argv: list[str] | None = None) -> None:
    import numpy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="builtin", choices=("builtin", "acts", "both"))
    parser.add_argument("--pileups", default="0,20,200", help="comma-separated μ values")
    parser.add_argument("--volumes", default="full,pixel", help="comma-separated: full, pixel")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    engines = ["builtin", "acts"] if args.engine == "both" else [args.engine]
    if "acts" in engines:
        from trackformers.simulation.acts import require

        require()  # one clear line if pyacts is missing
    pileups = [float(v) for v in args.pileups.split(",")]
    rows, layers = [], {}
    for engine in engines:
        for volumes in args.volumes.split(","):
            for mu in pileups:
                row, events = run_case(engine, mu, volumes, args.repeats)
                rows.append(row)
                if volumes == "full" and mu == max(pileups):
                    layers[engine] = per_layer(events)

    print(f"# simulation benchmark, {datetime.date.today()}, {_cpu()}, Python {platform.python_version()}, "
          f"numpy {numpy.__version__}; median of {args.repeats} batches, one process")
    print("| engine | volumes | μ | events/batch | events/s (wall) | events/s (CPU) | hits/event | "
          "hits/particle | pixel share |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['engine']} | {r['volumes']} | {r['pileup']:g} | {r['events_per_batch']} | "
              f"{r['events_per_s']:.2f} | {r['events_per_cpu_s']:.2f} | {r['hits_per_event']:.0f} | "
              f"{r['hits_per_particle']:.2f} | {r['pixel_share']:.3f} |")
    if len(layers) == 2:
        a, b = layers["builtin"], layers["acts"]
        print(f"\n# hits per layer at μ = {max(pileups):g}, full detector (mean per event)")
        print("| volume | layer | builtin | acts | acts / builtin |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for key in sorted(set(a) | set(b)):
            ratio = b.get(key, 0) / a[key] if a.get(key) else float("nan")
            print(f"| {key[0]} | {key[1]} | {a.get(key, 0):.0f} | {b.get(key, 0):.0f} | {ratio:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "cpu": _cpu(), "numpy": numpy.__version__,
                                               "date": str(datetime.date.today())}, indent=1))


if __name__ == "__main__":
    main()
