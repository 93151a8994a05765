"""Inference packs events without truth targets: the same batch otherwise, and the same reconstruction."""

from __future__ import annotations

import torch

from trackformers.batch import TRUTH_FIELDS
from trackformers.features import pack_events
from trackformers.simulation import simulate


def test_pack_without_targets_is_the_same_batch_minus_truth() -> None:
    events = list(simulate(2, seed=4, pileup=1, volumes=(7, 8, 9)))
    full = pack_events(events)
    bare = pack_events(events, targets=False)
    assert full.has_truth and not bare.has_truth
    for name in ("features", "categories", "cu_seqlens", "sort_index", "unsort_index", "hit_ids", "event_ids",
                 "phi", "eta"):
        assert torch.equal(getattr(full, name), getattr(bare, name)), name
    assert bare.max_seqlen == full.max_seqlen
    assert all(getattr(bare, name) is None for name in TRUTH_FIELDS)
    assert all(getattr(full, name) is not None for name in TRUTH_FIELDS)
