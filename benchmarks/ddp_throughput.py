"""Training throughput with Lightning DDP: simulated events per second on N GPUs (one process each).

Trains the shipped checkpoint's architecture from fresh weights (`local` attention, bf16-mixed)
on on-the-fly simulated pixel events for ``--steps`` optimiser steps and counts the events every rank trained
on after ``--warmup`` steps (start-up, compilation and the data workers' first events excluded). Run it once
per device count in the same call and divide (docs/benchmarks.md, "Multi-GPU"):

    python benchmarks/ddp_throughput.py --devices 1 --json out/ddp1.json
    python benchmarks/ddp_throughput.py --devices 2 --json out/ddp2.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trackformers.inference import default_checkpoint  # noqa: E402
from trackformers.training.datamodule import TrackDataModule  # noqa: E402
from trackformers.training.module import TrackingModule  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Meter(pl.Callback):
    """Events and hits this rank trained on between step ``warmup`` and the end, and the wall time."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.events, self.hits, self.t0, self.seconds = warmup, 0, 0, None, 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.warmup and self.t0 is None:
            sync()
            self.t0 = time.perf_counter()
        if self.t0 is not None:
            self.events += int(batch.num_events)
            self.hits += int(batch.num_hits)

    def on_train_end(self, trainer: pl.Trainer, module: Any) -> None:
        sync()
        self.seconds = time.perf_counter() - (self.t0 or time.perf_counter())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--pileup", type=float, default=20.0)
    p.add_argument("--workers", type=int, default=7, help="data workers per process")
    p.add_argument("--max-hits", type=int, default=40000)
    p.add_argument("--json", default=None)
    p.add_argument("--accelerator", default="gpu", help="gpu; cpu (gloo) only to smoke-test the script")
    args = p.parse_args()
    torch.set_float32_matmul_precision("high")
    # The shipped checkpoint's architecture and loss (not its weights), so this stays the model we ship.
    shipped = TrackingModule.load_checkpoint(default_checkpoint()).hparams
    module = TrackingModule(encoder=shipped["encoder"], task=shipped["task"], features=shipped["features"])
    data = TrackDataModule(volumes=[7, 8, 9], pileup=args.pileup, max_hits_per_batch=args.max_hits,
                           num_workers=args.workers, n_val_events=1)
    meter = Meter(args.warmup)
    trainer = pl.Trainer(accelerator=args.accelerator, devices=args.devices,
                         strategy="ddp" if args.devices > 1 else "auto",
                         precision="bf16-mixed" if args.accelerator == "gpu" else "32-true", max_steps=args.steps,
                         limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         gradient_clip_val=1.0, callbacks=[meter])
    trainer.fit(module, datamodule=data)
    totals = trainer.strategy.reduce(torch.tensor([meter.events, meter.hits], dtype=torch.float64,
                                                  device=trainer.strategy.root_device), reduce_op="sum")
    seconds = trainer.strategy.reduce(torch.tensor(meter.seconds, device=trainer.strategy.root_device), reduce_op="max")
    if trainer.global_rank == 0:
        rec = {"devices": args.devices, "steps": args.steps, "warmup": args.warmup, "pileup": args.pileup,
               "workers_per_process": args.workers, "max_hits": args.max_hits,
               "events": int(totals[0]), "hits": int(totals[1]), "seconds": float(seconds),
               "events_per_s": float(totals[0]) / float(seconds), "hits_per_s": float(totals[1]) / float(seconds),
               "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
               "torch": torch.__version__, "lightning": pl.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        print(json.dumps(rec), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
