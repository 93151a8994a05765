"""Peak memory and wall time of ``trackformers reconstruct`` on ONE huge event (~500k hits) on CPU.

The built-in simulator makes one event at high pile-up over all volumes (μ = 1000 gives ~524k hits), written
as Parquet; a small windowed model is exported (or ``--checkpoint`` is used); then the real console command
``python -m trackformers reconstruct`` runs as a child process and its peak resident memory is read from
``wait4`` (``ru_maxrss``: the child alone, not this script). Nothing here is a test: a 500k-hit event needs
minutes and GBs, CI has 2 cores.

Why it fits in memory: attention is windowed (``window`` φ-sorted neighbours). On a CPU, ``--backend auto``
picks ``local``, which without Triton runs a banded plain-torch path, O(N·window); ``--backend flex`` (compiled
FlexAttention, block-sparse) is O(N·window) too; ``dense`` would build an L×L mask (refused above 16 384 hits).
The ``gpu`` clusterer links φ-window neighbours in row blocks: at most N·window candidate edges.

    python benchmarks/huge_event.py --repeats 2             # μ = 1000, all volumes, backend auto, gpu clusterer
    python benchmarks/huge_event.py --backend flex          # FlexAttention instead
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_checkpoint(path: Path, *, window: int, seed: int) -> Path:
    """An untrained small model (d_model 32, 2 heads of 16, 2 layers, 8-d embedding) with a φ window."""
    import torch

    from trackformers.training.module import TrackingModule

    torch.manual_seed(seed)
    module = TrackingModule(
        encoder={"class_path": "trackformers.models.encoder.Encoder",
                 "init_args": {"d_model": 32, "n_heads": 2, "n_layers": 2, "backend": "auto", "window": window}},
        task={"class_path": "trackformers.models.tasks.EmbeddingTask", "init_args": {"dim": 8}},
    )
    return module.export_checkpoint(path)


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[int, float, float, str]:
    """Run ``cmd``; returns (exit status, wall seconds, peak RSS in GiB of that child, its stdout+stderr)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        log.seek(0)
        text = log.read()
    return proc.returncode, wall, usage.ru_maxrss / 2**20, text  # ru_maxrss is in KiB on Linux


def stage_seconds(text: str) -> dict[str, float]:
    """The per-stage totals from ``reconstruct``'s summary table."""
    found = {}
    for stage in ("read", "features", "model", "clustering", "write", "total"):
        m = re.search(rf"^{stage}\s+([0-9.]+)\s", text, flags=re.M)
        if m:
            found[stage] = float(m.group(1))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pileup", type=float, default=1000.0, help="μ (1000 → ~524k hits, all volumes)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--volumes", default=None, help="e.g. 7,8,9 (default: all volumes)")
    parser.add_argument("--window", type=int, default=64, help="attention half-width of the exported model")
    parser.add_argument("--checkpoint", default=None, help="use this checkpoint instead of exporting one")
    parser.add_argument("--backend", default="auto", help="--backend passed to reconstruct")
    parser.add_argument("--clusterer", default="gpu", help="--clusterer passed to reconstruct")
    parser.add_argument("--param", action="append", default=None, help="clusterer KEY=VALUE (repeatable)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the child")
    parser.add_argument("--limit-gb", type=float, default=24.0, help="the budget the peak is compared with")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of reconstruct (the median run by wall time is shown; peak = max over runs)")
    parser.add_argument("--workdir", default=None, help="keep the event / outputs here (default: temporary)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from trackformers.io import write_events
    from trackformers.simulation import simulate_event

    volumes = [int(v) for v in args.volumes.split(",")] if args.volumes else None
    with tempfile.TemporaryDirectory(prefix="huge-event-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        event = simulate_event(seed=args.seed, pileup=args.pileup, volumes=volumes, event_id=1)
        sim_s = time.perf_counter() - t0
        n_hits = len(event.hits)
        events_path = work / "events.parquet"
        write_events([event], events_path, format="parquet")
        del event
        checkpoint = Path(args.checkpoint) if args.checkpoint else make_checkpoint(
            work / "huge.ckpt", window=args.window, seed=args.seed)
        out = work / "out"
        cmd = [sys.executable, "-m", "trackformers", "reconstruct", str(events_path), "--checkpoint",
               str(checkpoint), "--out", str(out), "--device", "cpu", "--no-progress", "--backend",
               args.backend, "--clusterer", args.clusterer, "--format", "parquet"]
        for item in args.param or []:
            cmd += ["--param", item]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        load = os.getloadavg()[0]
        runs = [run_child(cmd, env) for _ in range(max(1, args.repeats))]
        failed = [r for r in runs if r[0] != 0]
        median = sorted(runs, key=lambda r: r[1])[(len(runs) - 1) // 2]  # its stage times are printed too
        status, wall, _, text = failed[0] if failed else median
        walls = [r[1] for r in runs]
        peak_gib = max(r[2] for r in runs)
        tracks = largest = None
        if status == 0:
            import pandas as pd

            sub = pd.read_parquet(out / "submission.parquet")
            assert len(sub) == n_hits and sub["hit_id"].is_unique, "submission must hold every hit once"
            tracks = int(sub["track_id"].nunique())
            sizes = np.bincount(sub["track_id"].to_numpy())
            largest = int(sizes.max())

    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at the start, torch {torch.__version__}, "
          f"python {platform.python_version()}")
    print(f"# event: seed {args.seed}, μ = {args.pileup:g}, volumes {args.volumes or 'all'}: {n_hits} hits "
          f"(simulated in {sim_s:.1f} s)")
    print(f"# command: {' '.join(Path(c).name if i < 3 else c for i, c in enumerate(cmd))}")
    print(f"# {len(runs)} run(s): wall {', '.join(f'{w:.1f}' for w in walls)} s; "
          f"peak RSS {', '.join(f'{r[2]:.2f}' for r in runs)} GiB")
    if status != 0:
        print(text[-4000:])
        print(f"reconstruct FAILED with status {status} after {wall:.1f} s; peak RSS {peak_gib:.2f} GiB")
        return 1
    stages = stage_seconds(text)
    print(f"{'hits':>8} {'backend':>8} {'clusterer':>10} {'peak RSS GiB':>13} {'budget GiB':>11} {'wall s':>8} "
          + " ".join(f"{s + ' s':>12}" for s in stages) + f" {'tracks':>8} {'largest':>8}")
    print(f"{n_hits:>8} {args.backend:>8} {args.clusterer:>10} {peak_gib:>13.2f} {args.limit_gb:>11.0f} "
          f"{wall:>8.1f} " + " ".join(f"{v:>12.1f}" for v in stages.values()) + f" {tracks:>8} {largest:>8}")
    return 0 if peak_gib <= args.limit_gb else 2


if __name__ == "__main__":
    sys.exit(main())
