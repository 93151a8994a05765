"""``benchmarks/reconstruct.py --profile DIR``: where one event's reconstruction time goes.

Sub-stages of ``TrackingModule.reconstruct`` on the first simulated event, each the median wall time of
``--repeats`` runs (≥ 5) between CUDA synchronisations: packing (CPU), copy to the device, the model eager and
(with ``--cuda-graphs``) replayed from a CUDA graph, the clustering (current ``gpu`` clusterer, and
``--old-clusterer FILE``'s for comparison, with a check that both give the same labels), and the whole
``reconstruct`` call. Then torch.profiler tables (host ops by self CPU time, kernels by self device time) of
one eager forward, one graphed forward and one clustering go to DIR/profile_tables.txt, a JSON summary to
DIR/profile.json.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trackformers.clustering import make_clusterer
from trackformers.features import pack_events
from trackformers.models.tasks.base import cluster_per_event


def _load_old(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("old_gpu_clusterer", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = mod  # type: ignore[union-attr]  # dataclasses look their module up there
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _kernel_summary(prof: Any) -> dict[str, float]:
    """Kernel count and summed device time (ms) of a profile; host time of the profiled region is separate."""
    total, count = 0.0, 0
    for e in prof.key_averages():
        dev = getattr(e, "self_device_time_total", None)
        if dev is None:
            dev = getattr(e, "self_cuda_time_total", 0.0)
        if getattr(e, "device_type", None) is not None and str(e.device_type).endswith("CUDA") and dev > 0:
            total += dev
            count += e.count
    return {"kernels": count, "kernel_ms": total / 1e3}


def cold_forward(module: Any, events: list, ms: dict[str, float], sync: Callable[[], None],
                 label: str = "") -> None:
    """The eager forward as the benchmark meets it: a different event each time, right after its packing
    on the CPU (tens of ms without GPU work); median over the events, twice round."""
    times = []
    for event in events + events:
        batch = pack_events([event], module.feature_config, targets=False).to(module.device)
        sync()
        t0 = time.perf_counter()
        module(batch)
        sync()
        times.append(time.perf_counter() - t0)
    ms[f"forward eager {label}after packing"] = 1e3 * statistics.median(times)
    print(f"forward eager {label}after packing: {ms[f'forward eager {label}after packing']:.3f} ms", flush=True)


def profile(args: Any, module: Any, events: list, device: torch.device, autocast: Callable[[], Any],
            forward: Any) -> int:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    out_dir = Path(args.profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    cuda = device.type == "cuda"
    reps = max(5, args.repeats)
    event = events[0]
    clusterer = make_clusterer("gpu", radius=0.2, window=1024)
    ms: dict[str, float] = {}

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        fn()  # warm-up (and CUDA-graph capture)
        times = []
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            result = fn()
            sync()
            times.append(time.perf_counter() - t0)
        ms[name] = 1e3 * statistics.median(times)
        print(f"{name:<28}{ms[name]:9.3f} ms", flush=True)
        return result

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    tables: dict[str, dict[str, float]] = {}
    texts: list[str] = []

    def profiled(name: str, fn: Callable[[], Any]) -> None:
        sync()
        with torch_profile(activities=activities) as prof:
            t0 = time.perf_counter()
            fn()
            sync()
            wall = time.perf_counter() - t0
        tables[name] = {"wall_ms_profiled": 1e3 * wall, **_kernel_summary(prof)}
        avg = prof.key_averages()
        text = [f"# {name}: {tables[name]}", avg.table(sort_by="self_cpu_time_total", row_limit=30)]
        if cuda:
            for key in ("self_device_time_total", "self_cuda_time_total"):
                try:
                    text.append(avg.table(sort_by=key, row_limit=30))
                    break
                except (KeyError, AttributeError, ValueError):
                    continue
        texts.extend(text)
        print(f"profiled {name}: {tables[name]}", flush=True)

    old = _load_old(args.old_clusterer).GPUClusterer(radius=0.2, window=1024) if args.old_clusterer else None
    with autocast(), torch.no_grad():
        cpu_batch = timed("pack (CPU, no targets)", lambda: pack_events([event], module.feature_config,
                                                                        targets=False))
        batch = timed("copy to device", lambda: cpu_batch.to(device))
        outputs = timed("forward eager", lambda: module(batch))
        if forward is not None:
            graphed = timed("forward CUDA graph", lambda: forward(batch))
            key = next(iter(outputs))
            ms["graph_vs_eager_max_abs_diff"] = float((graphed[key] - outputs[key]).abs().max())
            ms["graph_eager_reason"] = forward.reason  # type: ignore[assignment]
        x = outputs.get("embedding", outputs.get("coords"))
        labels = timed("clustering gpu (current)", lambda: cluster_per_event(x, batch, clusterer))
        if old is not None:
            labels_old = timed("clustering gpu (old)", lambda: cluster_per_event(x, batch, old))
            ms["old_equals_current"] = bool(torch.equal(labels, labels_old))  # type: ignore[assignment]
            # Same partition iff the (old, current) label pairs are as many as the tracks of each.
            ms["tracks_current"] = int(labels.max()) + 1
            ms["tracks_old"] = int(labels_old.max()) + 1
            ms["tracks_old_x_current"] = int(torch.unique(labels_old * (ms["tracks_current"] + 1) + labels).numel())
            print(f"old == current labels: {ms['old_equals_current']}", flush=True)
        timed("reconstruct eager", lambda: module.reconstruct(event, clusterer=clusterer))
        if forward is not None:
            timed("reconstruct CUDA graph", lambda: module.reconstruct(event, clusterer=clusterer, forward=forward))
        profiled("forward_eager", lambda: module(batch))
        if forward is not None:
            profiled("forward_graph", lambda: forward(batch))
        profiled("clustering", lambda: cluster_per_event(x, batch, clusterer))
        if old is not None:
            profiled("clustering_old", lambda: cluster_per_event(x, batch, old))
        cold_forward(module, events, ms, sync)
        if args.compile:
            from trackformers.cuda_graph import GraphedForward
            from trackformers.fused import compile_pointwise

            t0 = time.perf_counter()
            compile_pointwise(module)
            module(batch)
            sync()
            ms["compile_s"] = time.perf_counter() - t0
            compiled = timed("forward eager, compiled", lambda: module(batch))
            key = next(iter(outputs))
            ms["compiled_vs_eager_max_abs_diff"] = float((compiled[key] - outputs[key]).abs().max())
            graphed_c = GraphedForward(module)
            timed("forward graph, compiled", lambda: graphed_c(batch))
            ms["graph_compiled_eager_reason"] = graphed_c.reason  # type: ignore[assignment]
            profiled("forward_graph_compiled", lambda: graphed_c(batch))
            cold_forward(module, events, ms, sync, "compiled ")
    summary = {"hits": len(event.hits), "repeats": reps, "ms": ms, "profiles": tables,
               "device": torch.cuda.get_device_name(device) if cuda else "cpu", "torch": torch.__version__,
               "bf16": args.bf16, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (out_dir / "profile.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "profile_tables.txt").write_text("\n\n".join(texts))
    print(json.dumps(summary))
    return 0
