"""PackedBatch.select against its reference: packing the events cut down to the kept hits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackformers.batch import TRUTH_FIELDS
from trackformers.features import pack_events
from trackformers.filtering import HitFilter
from trackformers.simulation import simulate


@pytest.mark.parametrize("share", [0.0, 0.37, 1.0])
def test_select_equals_packing_the_subset_events(share: float) -> None:
    events = list(simulate(3, seed=17, pileup=2, volumes=(7, 8, 9)))
    rng = np.random.default_rng(3)
    keeps = [rng.random(len(e.hits)) < share for e in events]
    if 0.0 < share < 1.0:
        keeps[1][:] = False  # an event with no hit kept
    batch = pack_events(events)
    got = batch.select(torch.from_numpy(np.concatenate(keeps)))
    want = pack_events([HitFilter.subset(e, k) for e, k in zip(events, keeps)])
    for name in ("features", "categories", "cu_seqlens", "sort_index", "unsort_index", "hit_ids", "phi", "eta",
                 "event_ids", *TRUTH_FIELDS):
        # exact, dtype included (NaN vertices equal NaN)
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=0, equal_nan=True,
                                   msg=lambda m, name=name: f"{name}: {m}")
    assert got.max_seqlen == want.max_seqlen and got.events is None
    assert 0 < sum(map(len, (e.hits for e in events)))  # the events are not empty


def test_select_without_truth_and_bad_mask() -> None:
    events = list(simulate(2, seed=5, pileup=1, volumes=(7, 8, 9)))
    batch = pack_events(events, targets=False)
    keep = torch.arange(batch.num_hits) % 3 == 0
    got = batch.select(keep)
    assert got.particle_id is None and got.num_hits == int(keep.sum())
    with pytest.raises(ValueError, match="bool"):
        batch.select(keep.long())
    with pytest.raises(ValueError, match="bool"):
        batch.select(keep[:-1])


@pytest.mark.gpu
def test_select_on_cuda_with_a_host_mask_stays_on_cuda() -> None:
    events = list(simulate(2, seed=9, pileup=2, volumes=(7, 8, 9)))
    batch = pack_events(events)
    keep = torch.arange(batch.num_hits) % 4 != 1
    want = batch.select(keep)
    got = batch.to("cuda").select(keep)  # the mask stays on the host
    for name in ("features", "cu_seqlens", "sort_index", "unsort_index", "hit_ids", *TRUTH_FIELDS):
        assert getattr(got, name).device.type == "cuda", name
        torch.testing.assert_close(getattr(got, name).cpu(), getattr(want, name), rtol=0, atol=0, equal_nan=True)
