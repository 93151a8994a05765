"""SimulatedEvents: endless or finite, different and reproducible per worker and rank."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from torch.utils.data import DataLoader

from trackformers.errors import InputError
from trackformers.simulation import event_seed, simulate_event
from trackformers.simulation.dataset import SimulatedEvents

OPTS = {"seed": 17, "pileup": 0.0, "volumes": (8,)}


def _summary(event):
    return event.event_id, len(event.hits), float(event.hits["x"].sum())


def _collate(batch):
    return batch[0]


def test_finite_dataset_matches_simulate_event():
    ds = SimulatedEvents(n_events=4, transform=_summary, **OPTS)
    got = list(ds)
    assert len(ds) == 4 and [g[0] for g in got] == [0, 1, 2, 3]
    want = _summary(simulate_event(seed=event_seed(17, 2), event_id=2, pileup=0.0, volumes=(8,)))
    assert got[2] == want
    assert len({g[2] for g in got}) == 4  # all different


def test_endless_and_reproducible():
    ds = SimulatedEvents(transform=_summary, **OPTS)
    a = list(itertools.islice(iter(ds), 5))
    b = list(itertools.islice(iter(ds), 5))
    assert a == b and [x[0] for x in a] == [0, 1, 2, 3, 4]
    with pytest.raises(TypeError):
        len(ds)


def test_workers_and_ranks_share_events_out():
    ref = list(SimulatedEvents(n_events=6, transform=_summary, **OPTS))
    loader = DataLoader(SimulatedEvents(n_events=6, transform=_summary, **OPTS), batch_size=1, num_workers=2,
                        collate_fn=_collate)
    got = list(loader)
    assert sorted(got) == sorted(ref)  # same events, each once, whatever the worker count
    ranks = [list(SimulatedEvents(n_events=6, transform=_summary, rank=r, world_size=2, **OPTS))
             for r in (0, 1)]
    assert [x[0] for x in ranks[0]] == [0, 2, 4] and [x[0] for x in ranks[1]] == [1, 3, 5]
    assert sorted(ranks[0] + ranks[1]) == sorted(ref)


def test_yields_events_by_default():
    ev = next(iter(SimulatedEvents(**OPTS)))
    assert set(ev.hits["volume_id"]) == {8} and np.isclose(ev.truth["weight"].sum(), 1.0)


@pytest.mark.parametrize("kwargs", [{"pileup": -1.0}, {"volumes": [3]}, {"engine": "x"}, {"n_events": 0},
                                    {"colour": 2}, {"seed": -1}])
def test_bad_arguments_fail_at_construction(kwargs):
    with pytest.raises(InputError):
        SimulatedEvents(**{**OPTS, **kwargs})
