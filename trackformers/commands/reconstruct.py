"""``trackformers reconstruct``: hits → tracks over files, folders or globs; one submission per event."""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING, Any

from trackformers.commands._options import check_processes, parse_backend, parse_volumes
from trackformers.errors import InputError

if TYPE_CHECKING:
    from trackformers.clustering.selection import TrackSelector

NAME = "reconstruct"
HELP = "reconstruct tracks over event files with a trained checkpoint; write TrackML submissions"

#: ``--pipeline NAME``: the shipped, measured pipelines (docs/models.md), as the options they stand for; files
#: relative to the shipped-checkpoint folder. Options given explicitly on the command line take precedence.
PIPELINES: dict[str, dict[str, Any]] = {
    "mu20": {"checkpoint": "best.ckpt", "clean": True, "selector": "selector_mu20.pt"},
    "mu200": {"filter": "filter.ckpt", "checkpoint": "tracker_mu200.ckpt", "clean": True,
              "selector": "selector_mu200.pt"},
}


def parse_params(items: list[str] | None, option: str = "--param", example: str = "eps=0.2") -> dict[str, Any]:
    """``["eps=0.3", "k=none"]`` → ``{"eps": 0.3, "k": None}`` (ints, floats, none/true/false); errors name
    ``option``."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{option} {item}: expected KEY=VALUE, e.g. {example}.")
        low = value.lower()
        if low in ("none", "null"):
            params[key] = None
        elif low in ("true", "false"):
            params[key] = low == "true"
        else:
            try:
                params[key] = int(value)
            except ValueError:
                try:
                    params[key] = float(value)
                except ValueError:
                    params[key] = value
    return params


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options shared with ``trackformers demo`` and ``trackformers tune``."""
    from trackformers.clustering import names

    parser.add_argument("--checkpoint", default=None,
                        help="model checkpoint (default: the shipped one in data/checkpoints/)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    parser.add_argument("--clusterer", choices=names(), default=None,
                        help="track builder (default: the one the model was trained with)")
    parser.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="clusterer hyper-parameter, repeatable, for --clusterer or else for the checkpoint's "
                             "own clusterer (e.g. --clusterer dbscan --param eps=0.2, or --param "
                             "min_cluster_size=4 for the shipped models' hdbscan)")
    parser.add_argument("--backend", default=None,
                        help="attention backend override (auto, local, flex, dense, reference)")
    from trackformers.inference import PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="model arithmetic: fp32, bf16 autocast (faster on a GPU; distances stay fp32), "
                             "or auto (bf16 on a CUDA GPU that has it)")


def make_clusterer(args: argparse.Namespace, module: Any = None) -> Any:
    """The clusterer named by ``--clusterer`` with ``--param`` values; without ``--clusterer``, the clusterer of
    ``module`` (the loaded checkpoint) with its stored values overridden by ``--param``; None for the model's
    default unchanged."""
    from trackformers.clustering import make_clusterer as make
    from trackformers.clustering import names
    from trackformers.clustering.protocol import parameters

    params = parse_params(args.param)
    if args.clusterer is not None:
        return make(args.clusterer, **params)
    if not params:
        return None
    task = getattr(module, "task", None)
    stored = getattr(task, "clusterer_spec", None)  # resolved as Task.clusterer does: the stored spec, else default
    spec = dict((stored if stored is not None else getattr(task, "default_clusterer", None)) or {})
    name = spec.pop("name", None)
    if name not in names():
        raise InputError("--param needs --clusterer NAME here: the checkpoint names no clusterer to apply it to.")
    # name the unknown key here: the constructor's TypeError would not say the clusterer is the checkpoint's
    accepted = parameters(name)
    unknown = [item for item in args.param if item.partition("=")[0] not in accepted]
    if unknown:
        raise InputError(f"--param {unknown[0]}: {name}, the checkpoint's clusterer, has no parameter "
                         f"{unknown[0].partition('=')[0]}; expected one of {', '.join(accepted)}, or --clusterer NAME "
                         "for another clusterer.")
    return make(name, **{**spec, **params})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="event files, folders, TrackML prefixes or globs (CSV, ROOT or Parquet)")
    parser.add_argument("--out", required=True, help="output folder for the submissions")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv",
                        help="csv: DIR/<event>-submission.csv; parquet: one data set DIR/submission.parquet/")
    add_common(parser)
    parser.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                        help="bad input: stop with an error (fail) or report it and go on (skip)")
    parser.add_argument("--evaluate", action="store_true", help="print the metrics table (needs truth)")
    parser.add_argument("--volumes", default=None, help="keep only these volume ids, e.g. 7,8,9")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="replay the model from CUDA graphs (faster on a GPU; the clusterer reuses the graphs' "
                             "memory pool; runs eagerly, saying why, where it cannot)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the encoder's norms, MLPs and rotary rotation (one compilation, ~10 s, "
                             "serves every event length); with --cuda-graphs --precision bf16 the fastest GPU mode")
    parser.add_argument("--devices", type=int, default=1,
                        help="N > 1 (or --num-nodes > 1): Lightning predict with DDP, N processes a node")
    parser.add_argument("--num-nodes", type=int, default=1, help="nodes for distributed prediction")
    parser.add_argument("--filter", default=None, metavar="CKPT",
                        help="two-stage reconstruction: a hit-filter checkpoint (HitFilterTask) decides which "
                             "hits the tracker sees; every dropped hit gets its own track id")
    parser.add_argument("--filter-threshold", type=float, default=None, metavar="P",
                        help="keep probability cut in (0, 1) for --filter (default: the filter's own)")
    parser.add_argument("--filter-min-hits", type=int, default=0, metavar="N",
                        help="apply --filter only to events of at least N hits (others keep every hit), e.g. "
                             "20000 with the shipped μ = 200 filter on inputs of mixed pile-up")
    parser.add_argument("--filter-vertex-z", default=None, metavar="Z1,Z2,...",
                        help="vertex hypotheses in mm along the beam for --filter: one filter pass per value on "
                             "the event moved by -Z, a hit kept if any pass keeps it (default: the filter's own); "
                             "write it with '=' when it starts with a minus: --filter-vertex-z=-80,0,80")
    parser.add_argument("--clean", action=argparse.BooleanOptionalAction, default=None,
                        help="clean the tracks after clustering with helix fits from the origin: split tracks "
                             "that hold several helices, remove hits far off the fitted helix (singletons), "
                             "dissolve tracks left with < 3 hits, merge fragments of one helix, dissolve tracks "
                             "whose hits sit at one radius; --no-clean: off, also under --pipeline")
    parser.add_argument("--clean-param", action="append", metavar="KEY=VALUE",
                        help="--clean setting, repeatable: max_transverse_mm (1), max_z_mm (2) (residual cuts, "
                             "mm), split (3 rounds), iterations (2), min_hits (3), reject (false; true: dissolve a "
                             "track still failing the cut), merge (2 rounds; 0: off), merge_chi2 (36), "
                             "sigma_transverse_mm (1), sigma_z_mm (5), merge_fit (false), drop_one_radius (true)")
    parser.add_argument("--selector", default=None, metavar="FILE",
                        help="track selection, last: a track-selector file (benchmarks/train_selector.py; e.g. "
                             "data/checkpoints/selector_mu200.pt, trained behind the mu = 200 pair with --clean) "
                             "gives each track of >= 3 hits a probability of being one particle's; tracks below "
                             "its cut become singletons")
    parser.add_argument("--selector-cut", type=float, default=None, metavar="P",
                        help="probability cut in [0, 1) for --selector (default: the selector's own)")
    parser.add_argument("--pipeline", choices=sorted(PIPELINES), default=None,
                        help="a shipped, measured pipeline: mu20 = best.ckpt --clean --selector selector_mu20.pt "
                             "(pile-up up to ~50); mu200 = --filter filter.ckpt --checkpoint tracker_mu200.ckpt "
                             "--clean --selector selector_mu200.pt (from data/checkpoints/); options given "
                             "explicitly take precedence (--no-clean switches its cleaning off; the filter cannot "
                             "be: spell its options out instead)")


def run(args: argparse.Namespace) -> int:
    from trackformers.inference import (
        default_checkpoint,
        load_tracker,
        prefer_expandable_segments,
        reconstruct_files,
        resolve_device,
    )
    from trackformers.io.atomic import check_destination

    apply_pipeline(args)
    # the options alone first: a bad one must fail before any model is loaded or file written
    check_processes(args.devices, args.num_nodes)
    parse_backend(args.backend)
    parse_params(args.param)
    check_destination(args.out, option="--out", folder=True)
    device = resolve_device(args.device)  # (asks whether CUDA exists; starts nothing)
    if device.type == "cuda":
        prefer_expandable_segments()  # before anything allocates on the GPU
    volumes = parse_volumes(args.volumes)
    hit_filter = load_filter(args, device)
    clean = clean_params(args)
    selector = load_selector(args)
    module = load_tracker(args.checkpoint or default_checkpoint(), device, backend=args.backend)
    clusterer = make_clusterer(args, module)  # after the model: --param alone applies to its clusterer
    if args.compile:
        from trackformers.fused import compile_pointwise

        compile_pointwise(module)
    if args.devices > 1 or args.num_nodes > 1:
        if args.compile:
            raise InputError("--compile works in one process; leave it out with --devices/--num-nodes.")
        return _run_distributed(args, module, clusterer, volumes, device, hit_filter, clean, selector)

    def on_skip(source: str, reason: str) -> None:
        print(f"trackformers: skipped {source}: {reason}", file=sys.stderr)

    summary = reconstruct_files(args.inputs, module=module, out_dir=args.out, clusterer=clusterer,
                                fmt=args.format, on_error=args.on_error, volumes=volumes,
                                evaluate=args.evaluate, progress=False if args.no_progress else None,
                                device=device, on_skip=on_skip, cuda_graphs=args.cuda_graphs,
                                precision=args.precision, hit_filter=hit_filter, clean=clean,
                                selector=selector)
    print(summary.format())
    if args.evaluate:
        print_metrics(summary.metrics)
    if summary.events == 0 and summary.skipped:
        print("trackformers: error: no event was reconstructed; every input was skipped.", file=sys.stderr)
        return 2
    return 0


def apply_pipeline(args: argparse.Namespace) -> None:
    """Fill the options of ``--pipeline NAME`` (:data:`PIPELINES`) that were not given explicitly, in place, and
    say on stdout what the run uses."""
    name = getattr(args, "pipeline", None)
    if name is None:
        return
    from trackformers.inference import CHECKPOINT_DIR

    preset = PIPELINES[name]
    preset_model = args.checkpoint is None
    for key, value in preset.items():
        if getattr(args, key) is None:  # unset (--no-clean is False: an explicit choice, kept)
            setattr(args, key, str(CHECKPOINT_DIR / value) if isinstance(value, str) else value)
    if not preset_model and args.selector == str(CHECKPOINT_DIR / preset["selector"]):
        # a selector is trained behind one model's tracks: say so rather than pair it silently with another
        print(f"note: {preset['selector']} was trained behind {preset['checkpoint']}, not {args.checkpoint}; "
              "pass --selector for your model, or leave --pipeline out.")
    parts = [f"filter {args.filter}"] if args.filter else []
    parts += [f"tracker {args.checkpoint}", "--clean" if args.clean else "no cleaning",
              f"selector {args.selector}" if args.selector else "no selection"]
    print(f"pipeline {name}: " + ", ".join(parts))


def load_selector(args: argparse.Namespace) -> TrackSelector | None:
    """The TrackSelector of ``--selector`` (its cut replaced by ``--selector-cut``), or None without it."""
    if getattr(args, "selector", None) is None:
        if getattr(args, "selector_cut", None) is not None:
            raise InputError("--selector-cut needs --selector, the track selector it configures.")
        return None
    from trackformers.clustering.selection import TrackSelector

    return TrackSelector.load(args.selector, cut=args.selector_cut)


def clean_params(args: argparse.Namespace) -> dict[str, Any] | None:
    """The track-cleaning settings of ``--clean`` / ``--clean-param`` (checked), or None without --clean."""
    if not getattr(args, "clean", False):
        if getattr(args, "clean_param", None):
            raise InputError("--clean-param needs --clean, the track cleaning it configures.")
        return None
    from trackformers.clustering.cleaning import check_params

    return check_params(parse_params(args.clean_param, "--clean-param", "max_z_mm=2"))


def load_filter(args: argparse.Namespace, device: Any) -> Any:
    """The :class:`~trackformers.filtering.HitFilter` of ``--filter`` and its options, or None."""
    threshold = args.filter_threshold
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise InputError(f"--filter-threshold {threshold}: expected a keep probability in (0, 1).")
    if args.filter_min_hits < 0:
        raise InputError(f"--filter-min-hits {args.filter_min_hits}: expected a number of hits >= 0.")
    if args.filter is None:
        for flag, given in (("--filter-threshold", threshold is not None), ("--filter-min-hits", args.filter_min_hits),
                            ("--filter-vertex-z", args.filter_vertex_z is not None)):
            if given:
                raise InputError(f"{flag} needs --filter CKPT, the hit-filter checkpoint it applies to.")
        return None
    from trackformers.filtering import HitFilter

    return HitFilter.load(args.filter, device, threshold=threshold, backend=args.backend,
                          min_hits=args.filter_min_hits, vertex_z=parse_vertex_z(args.filter_vertex_z))


def parse_vertex_z(text: str | None) -> list[float] | None:
    """``"-80,0,80"`` → ``[-80.0, 0.0, 80.0]`` (mm); None → None; InputError naming the flag otherwise."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise InputError(f"--filter-vertex-z {text}: expected comma-separated finite z positions in mm, "
                         "e.g. --filter-vertex-z=-80,-40,0,40,80.")
    return values


def print_metrics(metrics: dict[str, Any] | None) -> None:
    """The metrics table (same module as ``trackformers evaluate``), or a note when no event had truth."""
    if metrics is None:
        print("no event had truth: nothing to evaluate.")
        return
    from trackformers.metrics import format_table

    print(format_table(metrics))


def _run_distributed(args: argparse.Namespace, module: Any, clusterer: Any, volumes: list[int] | None,
                     device: Any, hit_filter: Any = None, clean: dict[str, Any] | None = None,
                     selector: Any = None) -> int:
    """Lightning ``predict`` over ``--devices`` x ``--num-nodes`` DDP processes (each its share of inputs)."""
    from trackformers.inference import lightning_precision
    from trackformers.prediction_writer import predict_distributed

    if args.evaluate:
        raise InputError("--evaluate works in one process; run trackformers evaluate on the output instead.")
    if args.cuda_graphs:
        raise InputError("--cuda-graphs works in one process; leave it out with --devices/--num-nodes.")
    if hit_filter is not None:
        hit_filter.module.cpu()  # each rank moves it to its own device
    rank = predict_distributed(args.inputs, model=module.cpu(), out_dir=args.out, clusterer=clusterer,
                        fmt=args.format, volumes=volumes, on_error=args.on_error, hit_filter=hit_filter,
                        clean=clean, selector=selector,
                        accelerator="gpu" if device.type == "cuda" else "cpu", devices=args.devices,
                        num_nodes=args.num_nodes, strategy="ddp",
                        precision=lightning_precision(args.precision, device))
    if rank == 0:
        print(f"wrote the submissions to {args.out} ({args.devices} x {args.num_nodes} processes).")
    return 0
