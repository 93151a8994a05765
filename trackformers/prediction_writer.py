"""Distributed reconstruction through Lightning's ``predict``: each rank its share of the inputs, one writer.

* :class:`EventShards` — an iterable data set over the input units (files; TrackML folders split into
  events). Rank ``r`` of ``W`` (times DataLoader worker ``w`` of ``K``) reads units ``r·K + w``,
  ``r·K + w + W·K``, …: the shares are disjoint and cover every unit, so no event is lost or doubled, and
  each rank streams its events without loading the others.
* :class:`ReconstructionTask` — wraps a TrackingModule; ``predict_step(event)`` returns the event and its
  submission. Events are not tensors, so batches are not moved; the model moves its own features.
* :class:`SubmissionWriter` — a ``BasePredictionWriter`` that writes each submission atomically as it
  comes and, at the end, a manifest ``DIR/_manifests/rank<r>.txt`` listing the events that rank wrote.
* :func:`predict_distributed` — the whole job: ``Trainer(..., strategy="ddp" | "ddp_spawn").predict``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from trackformers.events import Event
from trackformers.inference import StageTimer, input_units, iter_events, reconstruct_event, write_output
from trackformers.training import pl  # lightning.pytorch, or pytorch_lightning where only that exists

BasePredictionWriter = pl.callbacks.BasePredictionWriter


def _identity(item: Any) -> Any:
    return item  # batches are single Events; no collation (module level so worker processes can pickle it)


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def share(units: Sequence[Any], *, rank: int, world: int, worker: int = 0, workers: int = 1) -> list[Any]:
    """Round-robin share of ``units`` of one (rank, worker); the shares are disjoint and cover ``units``."""
    return list(units[rank * workers + worker::world * workers])


class EventShards(IterableDataset):
    """Events of ``units`` for this rank and DataLoader worker (disjoint shares, together all units)."""

    def __init__(self, units: Sequence[Path], *, volumes: Sequence[int] | None = None,
                 on_error: str = "fail") -> None:
        self.units = [Path(u) for u in units]
        self.volumes = None if volumes is None else list(volumes)
        self.on_error = on_error

    def shard(self) -> list[Path]:
        """This process's (and worker's) units."""
        rank, world = _rank_and_world()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return share(self.units, rank=rank, world=world, worker=worker, workers=workers)

    def __iter__(self) -> Iterator[Event]:
        skipped: list[tuple[str, str]] = []
        for event in iter_events(self.shard(), volumes=self.volumes, on_error=self.on_error, skipped=skipped):
            yield event
            while skipped:
                source, reason = skipped.pop(0)
                print(f"trackformers: skipped {source}: {reason}", file=sys.stderr)
        for source, reason in skipped:
            print(f"trackformers: skipped {source}: {reason}", file=sys.stderr)


class ReconstructionTask(pl.LightningModule):
    """``predict_step(event) -> (event, submission)`` around a TrackingModule, an optional clusterer and the
    optional stages of :func:`~trackformers.inference.reconstruct_event`: a HitFilter, cleaning settings, a
    TrackSelector."""

    def __init__(self, model: torch.nn.Module, clusterer: Any = None, *, hit_filter: Any = None,
                 clean: dict[str, Any] | None = None, selector: Any = None) -> None:
        super().__init__()
        self.model = model
        self.clusterer = clusterer
        self.hit_filter, self.clean, self.selector = hit_filter, clean, selector
        # a submodule, so that Lightning moves the filter's model to each rank's device with the tracker
        self.filter_model = None if hit_filter is None else hit_filter.module

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch  # an Event of DataFrames; the model builds its tensors on its own device

    def on_predict_start(self) -> None:
        import warnings

        # Events come from an iterable data set, which has no batch indices to report; nothing is wrong.
        warnings.filterwarnings("ignore", message=".*infer the batch indices.*")

    def predict_step(self, batch: Event, batch_idx: int = 0) -> tuple[Event, Any]:
        return batch, reconstruct_event(self.model, batch, self.clusterer, StageTimer(), hit_filter=self.hit_filter,
                                        clean=self.clean, selector=self.selector)


class SubmissionWriter(BasePredictionWriter):
    """Writes every predicted submission atomically (``DIR/<event>-submission.csv`` or Parquet data set)."""

    def __init__(self, out_dir: str | Path, fmt: str = "csv") -> None:
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self.fmt = fmt
        self.written: list[str] = []

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        event, submission = prediction
        write_output(event, submission, self.out_dir, self.fmt)
        self.written.append(event.name)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from trackformers.io.atomic import atomic_path

        with atomic_path(manifest_path(self.out_dir, trainer.global_rank)) as tmp:
            tmp.write_text("".join(f"{name}\n" for name in self.written))


def manifest_path(out_dir: str | Path, rank: int) -> Path:
    """``DIR/_manifests/rank<r>.txt``: the event names rank ``r`` wrote, one per line."""
    return Path(out_dir) / "_manifests" / f"rank{rank}.txt"


def predict_distributed(inputs: Sequence[str | Path], *, model: torch.nn.Module, out_dir: str | Path,
                        clusterer: Any = None, fmt: str = "csv", volumes: Sequence[int] | None = None,
                        on_error: str = "fail", num_workers: int = 0, hit_filter: Any = None,
                        clean: dict[str, Any] | None = None, selector: Any = None, **trainer_kwargs: Any) -> int:
    """Reconstruct ``inputs`` with ``Trainer.predict`` over all ranks; one submission file per event.

    Args:
        model: a TrackingModule (``reconstruct(event, clusterer=...)``).
        hit_filter, clean, selector: the two-stage filter (its model on the CPU; each rank moves it), cleaning
            settings and track selector of :func:`~trackformers.inference.reconstruct_event`.
        trainer_kwargs: passed to :class:`lightning.pytorch.Trainer`, e.g. ``accelerator="gpu",
            devices=4, strategy="ddp"`` (or ``num_nodes``); defaults to one CPU/GPU process.
    Returns:
        This process's global rank (with ``ddp`` every rank returns; print summaries on rank 0 only).
    """
    skipped: list[tuple[str, str]] = []
    units = input_units(inputs, on_error, skipped)
    for source, reason in skipped:
        print(f"trackformers: skipped {source}: {reason}", file=sys.stderr)
    loader = DataLoader(EventShards(units, volumes=volumes, on_error=on_error), batch_size=None,
                        num_workers=num_workers, collate_fn=_identity)
    trainer_kwargs.setdefault("logger", False)
    trainer_kwargs.setdefault("enable_progress_bar", False)
    trainer_kwargs.setdefault("enable_model_summary", False)
    trainer = pl.Trainer(callbacks=[SubmissionWriter(out_dir, fmt)], **trainer_kwargs)
    task = ReconstructionTask(model, clusterer, hit_filter=hit_filter, clean=clean, selector=selector)
    trainer.predict(task, dataloaders=loader, return_predictions=False)
    return int(trainer.global_rank)
