"""Per-event reconstruction latency, split into read, features, model, clustering and write, per clusterer.

Simulates pixel events (volumes 7, 8, 9) at pile-up ``--pileup`` (μ = 200 gives about 57k hits), writes them
as TrackML CSV, then for each clusterer reconstructs every event ``--repeats`` times with the checkpoint:
read the CSV, features + model (``TrackingModule.reconstruct``), clustering, write the submission. Prints
medians over events × repeats (ms), the peak GPU memory of reconstruct (features + model + clustering) and
the DM efficiency / fake rate of the submissions, and writes the records as JSON.

    python benchmarks/reconstruct.py --device cpu --pileup 200 --events 3
    python benchmarks/reconstruct.py --device cuda --bf16 --events 5 --repeats 3 --json out/reco.json
    python benchmarks/reconstruct.py --device cuda --bf16 --input acts_events/mu20 --clusterers hdbscan
    python benchmarks/reconstruct.py --device cuda --bf16 --cuda-graphs --clusterers gpu ...
    python benchmarks/reconstruct.py --device cuda --bf16 --profile out/profile --old-clusterer old_gpu.py

``--compile`` compiles the encoder's norms and MLPs (:func:`trackformers.fused.compile_pointwise`).
``--cuda-graphs`` replays the model from CUDA graphs (:class:`trackformers.cuda_graph.GraphedForward`); every
event is reconstructed once untimed first, so the timed runs replay graphs captured then. The clusterer then
allocates from the graphs' pool (``GraphedForward.borrowing``) unless ``--no-lend-pool``. ``--profile DIR``
instead splits one event's reconstruction into sub-stages (median wall ms of ``--repeats``, CUDA-synchronised)
and writes torch.profiler tables of the model and the clustering to DIR.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trackformers.clustering import make_clusterer  # noqa: E402
from trackformers.errors import InputError  # noqa: E402
from trackformers.inference import (  # noqa: E402
    STAGES,
    StageTimer,
    autocast_for,
    default_checkpoint,
    reconstruct_event,
    write_output,
)

#: Clusterer settings benchmarked (name → keyword arguments).
CLUSTERERS: dict[str, dict[str, object]] = {
    "dbscan": {"eps": 0.2, "min_samples": 2},
    "hdbscan": {"min_cluster_size": 2},
    "gpu": {"radius": 0.2, "window": 1024},
    "condensation": {"t_beta": 0.5, "t_d": 0.5},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the shipped data/checkpoints/*.ckpt")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backend", default=None, help="override the attention backend (e.g. local, flex)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the model")
    p.add_argument("--pileup", type=float, default=200.0)
    p.add_argument("--events", type=int, default=3)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=31337)
    p.add_argument("--input", default=None, metavar="DIR",
                   help="time the TrackML CSV(.gz) events of DIR (e.g. ACTS-engine events) instead of simulating")
    p.add_argument("--clusterers", default="dbscan,gpu,condensation,hdbscan",
                   help="comma-separated subset of " + ",".join(CLUSTERERS))
    p.add_argument("--param", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="override a clusterer setting, e.g. gpu.radius=0.3")
    p.add_argument("--json", default=None, help="write the records here")
    p.add_argument("--filter", default=None, metavar="CKPT",
                   help="two-stage: a hit-filter checkpoint runs first (compiled too with --compile, from CUDA "
                        "graphs of its own with --cuda-graphs unless --eager-filter)")
    p.add_argument("--filter-vertex-z", default=None, metavar="Z1,Z2,...",
                   help="the filter's vertex hypotheses in mm (default: the filter checkpoint's own)")
    p.add_argument("--eager-filter", action="store_true", help="with --cuda-graphs: run the filter eagerly")
    p.add_argument("--cuda-graphs", action="store_true", help="replay the model from CUDA graphs")
    p.add_argument("--graph-slack", type=float, default=None, help="GraphedForward reuse_slack (default: its own)")
    p.add_argument("--graph-headroom", type=float, default=None, help="GraphedForward headroom (default: its own)")
    p.add_argument("--no-lend-pool", action="store_true",
                   help="GraphedForward(lend_pool=False): the clusterer allocates beside the graph pool, not in it")
    p.add_argument("--no-warmup-in-pool", action="store_true",
                   help="GraphedForward(warmup_in_pool=False): capture warm-ups beside the graph pool")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the encoder's norms and MLPs (trackformers.fused); with --profile: also")
    p.add_argument("--profile", default=None, metavar="DIR", help="profile one event's stages, write tables here")
    p.add_argument("--old-clusterer", default=None, metavar="FILE",
                   help="with --profile: a module file whose GPUClusterer is timed and compared with the current")
    p.add_argument("--huge", type=int, default=0, metavar="N",
                   help="only time the torch clusterers on N synthetic hits (memory check), then exit")
    args = p.parse_args()
    if args.profile and args.filter:
        p.error("--profile times the single-stage model only; it would ignore --filter")
    return args


def huge(n: int, device: torch.device) -> int:
    """Time the GPU and condensation clusterers on ``n`` synthetic hits: tracks of 10 hits as tight blobs
    in a 16-D embedding, φ-ordered like real hits; prints time and peak memory."""
    gen = torch.Generator().manual_seed(0)
    n_tracks = n // 10
    centre = torch.randn(n_tracks, 16, generator=gen)
    track = torch.randint(0, n_tracks, (n,), generator=gen)
    x = (centre[track] + 0.01 * torch.randn(n, 16, generator=gen)).to(device)
    phi = ((track.float() / n_tracks) * 6.2832 - 3.1416 + 0.001 * torch.randn(n, generator=gen)).to(device)
    beta = torch.rand(n, generator=gen).to(device)
    for name, clusterer in [("gpu", make_clusterer("gpu", radius=0.2, window=1024)),
                            ("condensation", make_clusterer("condensation", t_beta=0.5, t_d=0.2))]:
        for _ in range(2):  # the second run is the timed one
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            labels = clusterer(x, beta=beta, phi=phi) if name == "gpu" else clusterer(x, beta=beta)
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        print(json.dumps({"huge_hits": n, "clusterer": name, "ms": round(1e3 * dt, 2), "peak_mb": round(peak, 1),
                          "tracks": int(labels.max()) + 1, "true_tracks": int(track.unique().numel())}))
    return 0


def clusterer_settings(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    settings = {name: dict(CLUSTERERS[name]) for name in args.clusterers.split(",") if name}
    for item in args.param:
        key, _, value = item.partition("=")
        name, _, param = key.partition(".")
        settings.setdefault(name, {})[param] = None if value == "none" else float(value) \
            if "." in value or "e" in value else int(value)
    return settings


def main() -> int:
    try:
        return run(parse_args())
    except InputError as err:  # a bad --input file: one sentence, no traceback
        raise SystemExit(str(err)) from None


def run(args: argparse.Namespace) -> int:
    if args.huge:
        return huge(args.huge, torch.device(args.device))
    # The TrackML module directly: the ROOT one needs awkward/uproot, absent on some GPU images.
    from trackformers.io import trackml
    from trackformers.metrics import evaluate_event
    from trackformers.simulation import simulate
    from trackformers.training.module import TrackingModule

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    module = TrackingModule.load_checkpoint(ckpt, map_location="cpu", backend=args.backend).to(device).eval()
    t0 = time.perf_counter()
    if args.input:  # the user's events, copied so that every file read below is the same kind of CSV
        events = [trackml.read_event(p, volumes=(7, 8, 9)) for p in trackml.prefixes(Path(args.input))]
        if not events:
            raise SystemExit(f"{args.input}: no TrackML events (<prefix>-hits.csv[.gz]) found")
        bare = [e.event_id for e in events if e.truth is None]
        # the quality columns need truth: say so before any timing (--profile times stages only)
        if bare and not args.profile:
            raise SystemExit(f"{args.input}: event(s) {bare[:5]} have no truth file (<prefix>-truth.csv[.gz]); "
                             "this benchmark reports DM efficiency and fake rate, so it needs truth")
    else:
        events = list(simulate(args.events, seed=args.seed, pileup=args.pileup, volumes=(7, 8, 9)))
    tmp = Path(tempfile.mkdtemp(prefix="reco-bench-"))  # after the checks above: a refused input leaves no folder
    atexit.register(shutil.rmtree, tmp, True)  # the copies of the events: gone at exit, whichever path returns
    trackml.write(events, tmp / "events")
    print(f"{'read' if args.input else 'simulated'} {len(events)} events, "
          f"{statistics.mean(len(e) for e in events):.0f} hits on average ({time.perf_counter() - t0:.1f} s); "
          f"checkpoint {ckpt.name}; device {device}", flush=True)
    def autocast() -> contextlib.AbstractContextManager:  # the same numerics as `reconstruct --precision`
        return autocast_for("bf16" if args.bf16 else "fp32", device)

    forward = filter_forward = None
    hit_filter = None
    if args.filter:
        from trackformers.commands.reconstruct import parse_vertex_z
        from trackformers.filtering import HitFilter

        hit_filter = HitFilter.load(args.filter, device, backend=args.backend,
                                    vertex_z=parse_vertex_z(args.filter_vertex_z))
    if args.compile and not args.profile:
        from trackformers.fused import compile_pointwise

        compile_pointwise(module)
        if hit_filter is not None:
            compile_pointwise(hit_filter.module)
    if args.cuda_graphs:
        from trackformers.cuda_graph import GraphedForward

        policy = {k: v for k, v in (("reuse_slack", args.graph_slack), ("headroom", args.graph_headroom))
                  if v is not None}
        forward = GraphedForward(module, lend_pool=not args.no_lend_pool,
                                 warmup_in_pool=not args.no_warmup_in_pool, **policy)
        if hit_filter is not None and not args.eager_filter:
            filter_forward = GraphedForward(hit_filter.module, **policy)
    if args.profile:
        from benchmarks.reconstruct_profile import profile

        return profile(args, module, events, device, autocast, forward)
    t0 = time.perf_counter()
    with autocast():  # warm-up: CUDA context, kernel compilation, allocator (and each event's CUDA graph)
        for event in events if forward is not None else events[:1]:
            reconstruct_event(module, event, make_clusterer("gpu", radius=0.2), StageTimer(device), forward=forward,
                              hit_filter=hit_filter, filter_forward=filter_forward)
    warmup_s = time.perf_counter() - t0
    # the process's peaks so far: model load, compilation and (with --cuda-graphs) every capture
    warmup_peaks = (torch.cuda.max_memory_allocated(device) / 2**20, torch.cuda.max_memory_reserved(device) / 2**20) \
        if cuda else (None, None)
    if forward is not None:
        print(f"warm-up incl. CUDA-graph captures {warmup_s:.2f} s; graphs {len(forward.graphs)}; eager because: "
              f"{forward.reason or '-'}; failed: {forward.failed or '-'}; process peak so far "
              f"{warmup_peaks[0]:.0f} MB allocated, {warmup_peaks[1]:.0f} MB reserved", flush=True)
    records = []
    for name, params in clusterer_settings(args).items():
        clusterer = make_clusterer(name, **params)
        per_event: list[dict[str, float]] = []
        peak, reserved, before_clustering, quality, error = 0, 0, 0, [], None
        for rep in range(args.repeats):
            for event in events:
                timer = StageTimer(device)
                with timer("read"):
                    read = trackml.read_event(tmp / "events" / event.name, volumes=(7, 8, 9))
                if cuda:
                    torch.cuda.reset_peak_memory_stats(device)
                try:
                    with autocast():
                        sub = reconstruct_event(module, read, clusterer, timer, forward=forward,
                                                hit_filter=hit_filter, filter_forward=filter_forward)
                except InputError as err:  # e.g. condensation needs β, an embedding model has none
                    error = str(err)
                    break
                if cuda:
                    peak = max(peak, torch.cuda.max_memory_allocated(device))
                    reserved = max(reserved, torch.cuda.max_memory_reserved(device))
                    before_clustering = max(before_clustering, timer.peak_before.get("clustering", 0))
                with timer("write"):
                    write_output(read, sub, tmp / "out" / name)
                per_event.append(dict(timer.seconds))
                if rep == 0:
                    quality.append(evaluate_event(event=read, submission=sub))
            if error:
                break
        rec = {"clusterer": name, "params": params, "error": error, "n": len(per_event)}
        if per_event:
            for stage in STAGES:
                rec[f"{stage}_ms"] = 1e3 * statistics.median(e[stage] for e in per_event)
            # (records before 2026-11-24 04:40 UTC called the features + model + clustering median
            # "model_plus_clustering_ms")
            rec["model_clustering_ms"] = 1e3 * statistics.median(e["model"] + e["clustering"] for e in per_event)
            rec["features_model_clustering_ms"] = 1e3 * statistics.median(
                e["features"] + e["model"] + e["clustering"] for e in per_event)
            rec["peak_gpu_mb"] = peak / 2**20 if cuda else None
            rec["peak_reserved_mb"] = reserved / 2**20 if cuda else None
            # peak of features + model alone (before the clusterer ran)
            rec["peak_model_mb"] = before_clustering / 2**20 if cuda else None
            rec["eager_reason"] = None if forward is None else forward.reason
            for key in ("dm_efficiency", "fake_rate"):
                rec[key] = statistics.mean(q[key] for q in quality)
        records.append(rec)
        print(format_row(rec), flush=True)
    meta = {"device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "pileup": None if args.input else args.pileup,
            "events": len(events), "repeats": args.repeats, "input": args.input,
            "hits_mean": statistics.mean(len(e) for e in events),
            "bf16": args.bf16, "backend": args.backend, "checkpoint": ckpt.name, "filter": args.filter,
            "filter_vertex_z": None if hit_filter is None else list(hit_filter.vertex_z),
            "filter_graphed": filter_forward is not None and not filter_forward.reason,
            "cuda_graphs": args.cuda_graphs,
            "warmup_s": warmup_s, "graphs": None if forward is None else len(forward.graphs),
            "graph_lengths": None if forward is None else sorted(k[0] for k in forward.graphs),
            "graph_slack": None if forward is None else forward.reuse_slack,
            "graph_headroom": None if forward is None else forward.headroom,
            "graph_lend_pool": None if forward is None else forward.lend_pool,
            "graph_pools_retired": None if forward is None else forward.retired,
            "graph_warmup_in_pool": None if forward is None else forward.warmup_in_pool,
            "warmup_peak_allocated_mb": warmup_peaks[0], "warmup_peak_reserved_mb": warmup_peaks[1],
            "compile": args.compile, "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(meta))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "records": records}, indent=2))
    return 0


def format_row(rec: dict) -> str:
    if not rec.get("n"):
        return f"{rec['clusterer']:<13} n/a: {rec['error']}"
    cols = " ".join(f"{stage} {rec[f'{stage}_ms']:8.1f}" for stage in STAGES)
    peak = "" if rec["peak_gpu_mb"] is None else \
        (f" peak {rec['peak_gpu_mb']:7.1f} MB (model {rec['peak_model_mb']:7.1f}, "
         f"reserved {rec['peak_reserved_mb']:7.1f})")
    return (f"{rec['clusterer']:<13} ms/event (median of {rec['n']}): {cols} | model+clustering "
            f"{rec['model_clustering_ms']:8.1f}{peak} | DM eff {rec['dm_efficiency']:.4f} "
            f"fake {rec['fake_rate']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
