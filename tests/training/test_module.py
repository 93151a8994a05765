"""TrackingModule: checkpoints load with weights_only=True, unsafe ones are refused, reconstruct works."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch

from trackformers.errors import InputError
from trackformers.simulation import simulate_event
from trackformers.training.module import TrackingModule

ENCODER = {"class_path": "trackformers.models.encoder.Encoder",
           "init_args": {"d_model": 16, "n_heads": 2, "n_layers": 1, "backend": "dense", "window": 8}}
TASK = {"class_path": "trackformers.models.tasks.EmbeddingTask", "init_args": {"dim": 4}}


def small_module() -> TrackingModule:
    torch.manual_seed(0)
    return TrackingModule(encoder=ENCODER, task=TASK, features={"r_scale": 500.0})


def test_export_and_load_round_trip(tmp_path: Path) -> None:
    module = small_module()
    path = module.export_checkpoint(tmp_path / "m.ckpt")
    loaded = TrackingModule.load_checkpoint(path)
    assert loaded.feature_config.r_scale == 500.0 and not loaded.training
    for (k, a), (_, b) in zip(module.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    event = simulate_event(seed=3, volumes=(7, 8, 9), gun=4)
    a, b = module.reconstruct(event), loaded.reconstruct(event)
    assert list(a.columns) == ["hit_id", "track_id"] and a["track_id"].dtype == "int64"
    assert a["hit_id"].tolist() == event.hits["hit_id"].tolist()
    pd.testing.assert_frame_equal(a, b)
    assert "features" in loaded.last_timings


def test_half_export_and_backend_override(tmp_path: Path) -> None:
    path = small_module().export_checkpoint(tmp_path / "h.ckpt", half=True)
    loaded = TrackingModule.load_checkpoint(path, backend="reference")
    assert loaded.encoder.backend == "reference"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


class Evil:
    def __reduce__(self):  # noqa: ANN204 - a pickle payload that would run code
        return (os.system, ("echo pwned",))


def test_unsafe_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Evil()}}, path)
    with pytest.raises(InputError, match="weights_only"):
        TrackingModule.load_checkpoint(path)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(pickle.dumps([1, 2]) + b"garbage")
    with pytest.raises(InputError):
        TrackingModule.load_checkpoint(junk)
    with pytest.raises(InputError, match="no such file"):
        TrackingModule.load_checkpoint(tmp_path / "missing.ckpt")


def test_tampered_class_path_is_refused(tmp_path: Path) -> None:
    path = small_module().export_checkpoint(tmp_path / "t.ckpt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["encoder"]["class_path"] = "os.system"
    torch.save(ckpt, path)
    with pytest.raises(InputError, match="not allowed"):
        TrackingModule.load_checkpoint(path)


def test_clusterer_by_name_and_spec() -> None:
    module = small_module()
    event = simulate_event(seed=4, volumes=(7, 8, 9), gun=3)
    by_spec = module.reconstruct(event, clusterer={"name": "dbscan", "eps": 0.5, "min_samples": 1})
    by_name = module.reconstruct(event, clusterer="dbscan")
    assert len(by_spec) == len(by_name) == len(event.hits)
