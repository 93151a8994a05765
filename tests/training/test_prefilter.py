"""Prefilter: a Lightning fit whose training steps see exactly the hits a frozen filter keeps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from trackformers.batch import TRUTH_FIELDS
from trackformers.features import pack_events
from trackformers.filtering import HitFilter
from trackformers.simulation import simulate
from trackformers.training import pl
from trackformers.training.datamodule import TrackDataModule
from trackformers.training.module import TrackingModule
from trackformers.training.prefilter import Prefilter

ENCODER = {"class_path": "trackformers.models.encoder.Encoder",
           "init_args": {"d_model": 16, "n_heads": 2, "n_layers": 1, "backend": "dense", "window": None}}
TASK = {"class_path": "trackformers.models.tasks.EmbeddingTask", "init_args": {"dim": 4, "pt_min": 0.0}}
FILTER = {"class_path": "trackformers.models.tasks.HitFilterTask",
          "init_args": {"dim": 0, "vertex_z": [-30.0, 0.0, 30.0], "threshold": 0.5}}


class Seen(pl.Callback):
    """Records each batch as the loader gave it (``whole``, before the callbacks after this one) and as the
    training step received it (the same object after every on_train_batch_start)."""

    def __init__(self) -> None:
        self.batches: list[dict[str, torch.Tensor]] = []
        self.wholes: list = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: ANN001
        self.wholes.append(dataclasses.replace(batch))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.batches.append({"hit_ids": batch.hit_ids.clone(), "cu": batch.cu_seqlens.clone(),
                             "sort": batch.sort_index.clone(), "features": batch.features.clone()})


def fit_with_prefilter(tmp_path: Path, accelerator: str) -> tuple[Seen, Prefilter, float, Path]:
    """Three training steps of a tiny tracker behind a tiny filter whose cut keeps about half of the hits."""
    torch.manual_seed(1)
    filt = TrackingModule(encoder=ENCODER, task=FILTER)
    path = filt.export_checkpoint(tmp_path / "filter.ckpt")
    data = TrackDataModule(volumes=[7, 8, 9], pileup=2.0, train_seed=7, n_val_events=1, max_hits_per_batch=400,
                           num_workers=0)
    reference = HitFilter.load(path, torch.device("cpu"))
    data.setup("fit")
    first = next(iter(data.train_dataloader()))  # (the trainer's stream need not start with this batch)
    threshold = float(reference.batch_probability(first).median())  # keeps about half of the hits
    seen = Seen()
    pre = Prefilter(str(path), threshold=threshold, bf16=accelerator == "gpu")
    tracker = TrackingModule(encoder=ENCODER, task=TASK)
    trainer = pl.Trainer(accelerator=accelerator, devices=1, max_steps=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0,
                         callbacks=[seen, pre])
    trainer.fit(tracker, datamodule=data)
    assert len(seen.batches) == 3
    return seen, pre, threshold, path


def test_training_steps_see_the_kept_hits(tmp_path: Path) -> None:
    seen, pre, threshold, path = fit_with_prefilter(tmp_path, "cpu")
    # the reference: each batch as loaded, cut by the filter's own probabilities
    reference = HitFilter.load(path, torch.device("cpu"), threshold=threshold)
    for got, whole in zip(seen.batches, seen.wholes):
        keep = reference.batch_probability(whole) >= reference.threshold
        want = whole.select(keep)
        assert 0 < want.num_hits < whole.num_hits  # the cut did something
        assert torch.equal(got["hit_ids"], want.hit_ids) and torch.equal(got["cu"], want.cu_seqlens)
        assert torch.equal(got["sort"], want.sort_index) and torch.equal(got["features"], want.features)
    assert pre.hits_kept < pre.hits_seen


def test_batch_probability_equals_the_per_event_probability(tmp_path: Path) -> None:
    torch.manual_seed(2)
    filt = TrackingModule(encoder=ENCODER, task=FILTER).eval()
    events = list(simulate(2, seed=3, pileup=2, volumes=(7, 8, 9)))
    hf = HitFilter(filt)
    batch = pack_events(events, filt.feature_config)
    assert all(getattr(batch, name) is not None for name in TRUTH_FIELDS)
    got = hf.batch_probability(batch).numpy()
    n0 = len(events[0].hits)
    # the encoder is dense over each event: packing two events must not mix them
    torch.testing.assert_close(torch.from_numpy(got[:n0]), torch.from_numpy(hf.probability(events[0])))
    torch.testing.assert_close(torch.from_numpy(got[n0:]), torch.from_numpy(hf.probability(events[1])))


def test_a_filter_of_other_features_is_refused(tmp_path: Path) -> None:
    # the filter reads the tracker's batches as packed: another normalisation would cut by wrong inputs
    torch.manual_seed(3)
    path = TrackingModule(encoder=ENCODER, task=FILTER).export_checkpoint(tmp_path / "filter.ckpt")
    pre = Prefilter(str(path))
    pre.setup(None, TrackingModule(encoder=ENCODER, task=TASK), "fit")  # same features: loads
    assert pre.hit_filter is not None
    other = TrackingModule(encoder=ENCODER, task=TASK, features={"z_scale": 1500.0})
    with pytest.raises(ValueError, match="z_scale.*expected the same FeatureConfig"):
        pre.setup(None, other, "fit")


@pytest.mark.gpu
def test_prefilter_on_cuda_cuts_as_its_bf16_reference(tmp_path: Path) -> None:
    seen, pre, threshold, path = fit_with_prefilter(tmp_path, "gpu")
    assert pre.hit_filter.module.device.type == "cuda"
    reference = HitFilter.load(path, torch.device("cuda"), threshold=threshold)
    for got, whole in zip(seen.batches, seen.wholes):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            keep = reference.batch_probability(whole) >= threshold
        want = whole.select(keep)
        assert torch.equal(got["hit_ids"], want.hit_ids) and torch.equal(got["sort"], want.sort_index)
