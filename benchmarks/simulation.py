"""Simulation speed (events/s per core) and event content, per engine, pile-up and detector selection.

Usage: ``python benchmarks/simulation.py [--engine builtin|acts|both] [--pileups 0,20,200] [--repeats 5]
[--json out.json]``

Each case simulates a batch of events (seeds 0, 1, … of ``simulate``) in this one process and thread, so
events/s is per core; the table reports the median over ``repeats`` batches of the wall-clock rate (and the
process-CPU rate beside it, which is what one core delivers when the machine is shared). Content columns
(hits per event, hits per particle with >= 1 hit, pixel share) are means over all simulated events. With
``--engine both`` (needs pyacts) the same seeds (and batch sizes) go through both engines and side-by-side
tables of hits and crossings per volume and per layer are printed too (the issue's goal: agreement within
10%).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

from machine import cpu_name  # benchmarks/machine.py (scripts run from this folder's path)

VOLUME_SETS = {"full": None, "pixel": (7, 8, 9)}



def _pyacts_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyacts")
    except PackageNotFoundError:
        return None


def _batch_size(engine: str, pileup: float) -> int:
    # about a second of work per batch for the built-in engine, a few seconds for ACTS (~2.5 s per μ = 200)
    if engine == "acts":
        return 20 if pileup < 1 else 4 if pileup < 50 else 2
    return 40 if pileup < 1 else 10 if pileup < 50 else 3


def run_case(engine: str, pileup: float, volumes: str, repeats: int, n: int) -> tuple[dict, list]:
    from trackformers.simulation import simulate

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


def per_layer(events: list) -> dict[tuple[int, int], tuple[float, float]]:
    """Mean (hits, crossings) per event on each (volume, layer); a crossing is a (particle, layer) pair with
    >= 1 hit, so hits / crossings measures module overlaps (double hits), crossings the tracks' reach."""
    import pandas as pd

    hits, crossings = [], []
    for e in events:
        t = e.truth[["hit_id", "particle_id"]].merge(e.hits[["hit_id", "volume_id", "layer_id"]], on="hit_id")
        hits.append(t.groupby(["volume_id", "layer_id"]).size())
        t = t[t["particle_id"] != 0].drop_duplicates(["particle_id", "volume_id", "layer_id"])
        crossings.append(t.groupby(["volume_id", "layer_id"]).size())
    h = pd.concat(hits, axis=1).fillna(0).mean(axis=1)
    c = pd.concat(crossings, axis=1).fillna(0).mean(axis=1).reindex(h.index, fill_value=0)
    return {(int(k[0]), int(k[1])): (float(h[k]), float(c[k])) for k in h.index}


def _ratio(b: float, a: float) -> str:
    return f"{b / a:.2f}" if a else "n/a"


def _compare(a: dict, b: dict, mu: float) -> None:
    """Side-by-side tables, built-in (a) vs ACTS (b): per volume, then per layer."""
    print(f"\n# hits and crossings per volume at μ = {mu:g}, full detector (mean per event, same seeds)")
    print("| volume | hits builtin | hits acts | ratio | crossings builtin | crossings acts | ratio | "
          "hits/crossing builtin | hits/crossing acts |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for vol in sorted({k[0] for k in a} | {k[0] for k in b}):
        ha, ca = (sum(v[i] for k, v in a.items() if k[0] == vol) for i in (0, 1))
        hb, cb = (sum(v[i] for k, v in b.items() if k[0] == vol) for i in (0, 1))
        print(f"| {vol} | {ha:.0f} | {hb:.0f} | {_ratio(hb, ha)} | {ca:.0f} | {cb:.0f} | {_ratio(cb, ca)} | "
              f"{_ratio(ha, ca)} | {_ratio(hb, cb)} |")
    print(f"\n# per layer at μ = {mu:g}, full detector (mean per event)")
    print("| volume | layer | hits builtin | hits acts | ratio | crossings ratio |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    within = {"hits": 0, "crossings": 0}
    keys = sorted(set(a) | set(b))
    for key in keys:
        (ha, ca), (hb, cb) = a.get(key, (0.0, 0.0)), b.get(key, (0.0, 0.0))
        within["hits"] += bool(ha) and abs(hb / ha - 1) <= 0.1
        within["crossings"] += bool(ca) and abs(cb / ca - 1) <= 0.1
        print(f"| {key[0]} | {key[1]} | {ha:.0f} | {hb:.0f} | {_ratio(hb, ha)} | {_ratio(cb, ca)} |")
    print(f"\nlayers within 10%: hits {within['hits']} of {len(keys)}, crossings {within['crossings']} of "
          f"{len(keys)}")


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
        from trackformers.errors import InputError
        from trackformers.simulation.acts import require

        try:
            require()
        except InputError as err:
            raise SystemExit(f"benchmarks/simulation.py: {err}") from None  # one clear line, no traceback
    pileups = [float(v) for v in args.pileups.split(",")]
    rows, layers = [], {}
    for engine in engines:
        for volumes in args.volumes.split(","):
            for mu in pileups:
                # both engines: the same batches (seeds), so the content columns compare the same events
                n = _batch_size("acts" if "acts" in engines else engine, mu)
                row, events = run_case(engine, mu, volumes, args.repeats, n)
                rows.append(row)
                if volumes == "full" and mu == max(pileups):
                    layers[engine] = per_layer(events)

    print(f"# simulation benchmark, {datetime.date.today()}, {cpu_name()}, Python {platform.python_version()}, "
          f"numpy {numpy.__version__}, pyacts {_pyacts_version()}; median of {args.repeats} batches, one process")
    print("| engine | volumes | μ | events/batch | events/s (wall) | events/s (CPU) | hits/event | "
          "hits/particle | pixel share |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['engine']} | {r['volumes']} | {r['pileup']:g} | {r['events_per_batch']} | "
              f"{r['events_per_s']:.2f} | {r['events_per_cpu_s']:.2f} | {r['hits_per_event']:.0f} | "
              f"{r['hits_per_particle']:.2f} | {r['pixel_share']:.3f} |")
    if len(layers) == 2:
        _compare(layers["builtin"], layers["acts"], max(pileups))
    if args.json:
        per_layer_json = {e: {f"{k[0]}/{k[1]}": list(v) for k, v in lay.items()} for e, lay in layers.items()}
        Path(args.json).write_text(json.dumps({"rows": rows, "layers": per_layer_json, "cpu": cpu_name(),
                                               "numpy": numpy.__version__, "pyacts": _pyacts_version(),
                                               "date": str(datetime.date.today())}, indent=1))


if __name__ == "__main__":
    main()
