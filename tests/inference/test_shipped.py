"""The shipped checkpoints: they load with the safe loader, carry what the model card says, and the hit filter
has learned (it keeps hard-particle hits far above their share) — on the CPU, on a fresh μ = 60 event (the filter
was trained at μ = 200; at μ = 20 its ±512-hit window spans ten times the φ it was trained on)."""

from __future__ import annotations

import pytest

from trackformers.features import pack_events
from trackformers.filtering import HitFilter
from trackformers.inference import CHECKPOINT_DIR, default_checkpoint
from trackformers.simulation import simulate
from trackformers.training.module import TrackingModule

FILTER = CHECKPOINT_DIR / "filter.ckpt"


def test_shipped_tracker_is_the_rotary_embedding_model() -> None:
    module = TrackingModule.load_checkpoint(default_checkpoint(), backend="dense")
    assert type(module.task).__name__ == "EmbeddingTask"
    assert module.encoder.rotary is not None and module.encoder.rotary.pairs == 12
    assert module.task.clusterer_spec["name"] == "hdbscan"


def test_shipped_filter_keeps_hard_particle_hits(monkeypatch: pytest.MonkeyPatch) -> None:
    # CPU: the local backend's banded plain-torch path (the Triton interpreter would take minutes at 17k hits)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    module = TrackingModule.load_checkpoint(FILTER)  # auto: a banded backend that runs on the CPU
    assert type(module.task).__name__ == "HitFilterTask" and module.task.dim == 0
    event = next(iter(simulate(1, seed=3_000_001, pileup=60, volumes=(7, 8, 9))))
    keep = HitFilter(module).keep(event)
    # the training target itself (hit of a particle with pT >= keep_pt_min), rows in hits-table order
    target = module.task.target(pack_events([event], module.feature_config)).bool().numpy()
    efficiency = keep[target].mean()
    purity = target[keep].mean()
    # an untrained or constant filter keeps all hits (purity = the share, ~0.2) or none (efficiency 0)
    assert efficiency > 0.5 and purity > 3 * target.mean(), (efficiency, purity, target.mean())
