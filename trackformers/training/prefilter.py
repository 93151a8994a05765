"""Train a tracker on what a frozen hit filter keeps: a Lightning callback that cuts every batch down.

Behind the two-stage path (:mod:`trackformers.filtering`) the tracker sees the filter's kept hits: mostly hits
of hard particles, but also the soft hits the filter lets through and hard tracks with holes. A tracker
trained on perfect-filter events (hard particles only) never saw those. :class:`Prefilter` runs the filter
(all its vertex-hypothesis passes, no gradient) on each training batch on the training device and replaces
the batch's contents in place with :meth:`~trackformers.batch.PackedBatch.select` of the kept hits, before
the training step sees it. Validation batches are left whole (their metrics need the whole event).

Use from YAML (``trainer.callbacks``) or ``benchmarks/train_gpu.py --prefilter JSON`` (these arguments). The filter
must have been trained with the tracker's feature normalisation: it reads the tracker's packed batches as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from trackformers.batch import PackedBatch
from trackformers.training import pl


class Prefilter(pl.Callback):
    """Cuts each training batch, in place, to the hits a frozen hit filter keeps.

    Args:
    checkpoint: a hit-filter checkpoint (a TrackingModule with a HitFilterTask), loaded weights_only.
    threshold: keep probability cut; None = the checkpoint's own. vertex_z: hypotheses (mm); None = its own.
    bf16: run the filter under bf16 autocast on a CUDA device (how reconstruction runs it fast).

    ``hits_seen`` / ``hits_kept`` count the training hits before and after the cut.
    """

    def __init__(self, checkpoint: str, threshold: float | None = None, vertex_z: Sequence[float] | None = None,
                 bf16: bool = True) -> None:
        self.checkpoint, self.threshold, self.vertex_z, self.bf16 = checkpoint, threshold, vertex_z, bf16
        self.hit_filter: Any = None
        self.hits_seen = 0
        self.hits_kept = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from trackformers.filtering import HitFilter

        # loaded here, on the module's device, so that the callback itself stays a plain, picklable spec
        self.hit_filter = HitFilter.load(self.checkpoint, pl_module.device, threshold=self.threshold,
                                         vertex_z=self.vertex_z)
        self.hit_filter.module.requires_grad_(False)
        # the filter reads the tracker's batches as packed: other normalisation constants (or cell features)
        # would feed it silently wrong inputs, so refuse rather than cut by them
        mine, its = getattr(pl_module, "feature_config", None), self.hit_filter.module.feature_config
        if mine is not None and mine != its:
            raise ValueError(f"Prefilter {self.checkpoint}: the filter's features {its.to_dict()} differ from the "
                             f"trained module's {mine.to_dict()}; expected the same FeatureConfig.")

    def cut(self, batch: PackedBatch) -> None:
        """Replace ``batch``'s fields, in place, with those of its kept hits."""
        device = batch.features.device
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16 and device.type == "cuda")
        if self.hit_filter.module.device != device:
            self.hit_filter.module.to(device)
        with autocast:
            keep = self.hit_filter.batch_probability(batch) >= self.hit_filter.threshold
        kept = batch.select(keep)
        for f in dataclasses.fields(kept):
            setattr(batch, f.name, getattr(kept, f.name))
        self.hits_seen += int(keep.numel())
        self.hits_kept += int(kept.num_hits)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.cut(batch)
