"""``trackformers tune``: scan a clusterer hyper-parameter on validation events (efficiency, fake rate)."""

from __future__ import annotations

import argparse
import itertools

from trackformers.errors import InputError

NAME = "tune"
HELP = "scan a clusterer hyper-parameter on validation events; print efficiency and fake rate per value"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trackformers.clustering import names

    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="validation events with truth (files, folders, globs); or use --simulate")
    parser.add_argument("--simulate", type=int, default=0, metavar="N",
                        help="instead of files, simulate N events with the built-in engine")
    parser.add_argument("--pileup", type=float, default=20.0, help="pile-up mu of simulated events")
    parser.add_argument("--seed", type=int, default=424242, help="seed of simulated events")
    parser.add_argument("--max-events", type=int, default=None, help="use at most this many events")
    parser.add_argument("--clusterer", choices=names(), required=True, help="the clusterer to tune")
    parser.add_argument("--scan", required=True, metavar="KEY=V1,V2,...",
                        help="the hyper-parameter and its values, e.g. eps=0.1,0.2,0.3")
    parser.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="other clusterer hyper-parameters, repeatable")
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped one)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--backend", default=None, help="attention backend override")
    parser.add_argument("--volumes", default="7,8,9", help="volume ids to keep (default: pixels 7,8,9)")
    parser.add_argument("--write", default=None, metavar="CKPT",
                        help="write a copy of the checkpoint whose default clusterer is the best value "
                             "(highest TrackML score)")


def parse_scan(text: str) -> tuple[str, list[object]]:
    """``"eps=0.1,0.2"`` → ``("eps", [0.1, 0.2])``."""
    from trackformers.commands.reconstruct import parse_params

    key, sep, values = text.partition("=")
    if not sep or not key or not values:
        raise InputError(f"--scan {text}: expected KEY=V1,V2,..., e.g. eps=0.1,0.2,0.3.")
    return key, [parse_params([f"{key}={v}"])[key] for v in values.split(",") if v.strip()]


def run(args: argparse.Namespace) -> int:
    from trackformers.clustering.tuning import format_scan, scan, write_tuned
    from trackformers.commands._options import parse_backend, parse_volumes
    from trackformers.commands.reconstruct import parse_params
    from trackformers.inference import default_checkpoint, load_tracker, resolve_device
    from trackformers.io.atomic import check_destination

    key, values = parse_scan(args.scan)
    volumes = parse_volumes(args.volumes)
    parse_backend(args.backend)
    if args.write:
        check_destination(args.write, option="--write", folder=False)  # before the scan, which may take minutes
    source = args.checkpoint or default_checkpoint()
    module = load_tracker(source, resolve_device(args.device), backend=args.backend)
    if args.simulate:
        from trackformers.simulation import simulate

        events = simulate(args.simulate, seed=args.seed, pileup=args.pileup, volumes=volumes)
    elif args.inputs:
        from trackformers.io import read_events

        events = read_events(args.inputs, volumes=volumes)
    else:
        raise InputError("no validation events: pass INPUT files or --simulate N.")
    events = list(itertools.islice(events, args.max_events))
    if not any(e.truth is not None for e in events):
        raise InputError("the validation events have no truth; expected events with a truth table.")
    table = scan(module, events, clusterer=args.clusterer, param=key, values=values,
                 fixed=parse_params(args.param))
    print(f"{args.clusterer}: {len(events)} events, mean over events")
    print(format_scan(table, key))
    if args.write:
        spec = write_tuned(source, args.write, clusterer=args.clusterer, param=key, table=table,
                           fixed=parse_params(args.param),
                           note=f"{len(events)} events, pile-up {args.pileup if args.simulate else 'from files'}, "
                                f"seed {args.seed if args.simulate else '-'}")
        print(f"wrote {args.write} with clusterer {spec}")
    return 0
