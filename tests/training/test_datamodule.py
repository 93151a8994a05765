"""TrackDataModule: packed batches bounded by total hits, from real files and from the simulator."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest
import torch

from trackformers.features import FeatureConfig
from trackformers.io import write_events
from trackformers.simulation import simulate
from trackformers.training.datamodule import TrackDataModule, pack_by_hits


def test_pack_by_hits_respects_the_limit() -> None:
    events = list(simulate(5, seed=1, volumes=(7, 8, 9), gun=6))
    sizes = [len(e.hits) for e in events]
    limit = max(sizes) + 1
    batches = list(pack_by_hits(iter(events), max_hits=limit, config=FeatureConfig()))
    assert sum(b.num_events for b in batches) == 5
    assert all(b.num_hits <= limit for b in batches)
    # An event larger than the limit still comes, alone.
    alone = list(pack_by_hits(iter(events), max_hits=1, config=FeatureConfig()))
    assert [b.num_hits for b in alone] == sizes


def test_from_csv_files(tmp_path: Path) -> None:
    events = list(simulate(3, seed=2, volumes=(7, 8, 9), gun=5))
    write_events(events, tmp_path / "ev", format="csv")
    dm = TrackDataModule(train_files=[str(tmp_path / "ev")], val_files=[str(tmp_path / "ev")],
                         max_hits_per_batch=10_000)
    train = list(islice(iter(dm.train_dataloader()), 2))  # the training stream repeats the files
    assert train[0].event_ids[:6].tolist() == [0, 1, 2, 0, 1, 2]
    assert all(b.num_hits <= 10_000 and b.particle_id.dtype == torch.int64 for b in train)
    val = list(dm.val_dataloader())
    assert len(val) == 1 and val[0].events is not None and len(val[0].events) == 3


def test_simulated_stream_is_reproducible_and_seeds_differ() -> None:
    def first(seed: int):  # noqa: ANN202
        dm = TrackDataModule(volumes=[7, 8, 9], simulation={"gun": 3}, train_seed=seed, max_hits_per_batch=500)
        return next(iter(dm.train_dataloader()))

    a, b, c = first(5), first(5), first(6)
    assert torch.equal(a.features, b.features)
    assert a.features.shape != c.features.shape or not torch.equal(a.features, c.features)
    dm = TrackDataModule(volumes=[7, 8, 9], simulation={"gun": 3}, n_val_events=2, n_test_events=2)
    val_ids = {int(e) for batch in dm.val_dataloader() for e in batch.event_ids}
    test_ids = {int(e) for batch in dm.test_dataloader() for e in batch.event_ids}
    assert len(val_ids) == 2 and not val_ids & test_ids


def test_pileup_mix_alternates_per_event_and_fixed_stages_use_the_last() -> None:
    import numpy as np

    from trackformers.simulation import simulate_event
    from trackformers.training.datamodule import SimulatedStream

    dm = TrackDataModule(volumes=[7, 8, 9], pileup=[0.0, 1.0], train_seed=9, n_val_events=1)
    stream = SimulatedStream(seed=9, simulation=dm.simulation, max_hits=10**6, config=dm.config)
    events = stream.events()
    for i in range(3):
        got = next(events)
        want = simulate_event(seed=np.random.SeedSequence(9, spawn_key=(0, i)), event_id=i, volumes=[7, 8, 9],
                              pileup=(0.0, 1.0)[i % 2])
        assert len(got.hits) == len(want.hits)
        assert np.array_equal(got.hits["x"].to_numpy(), want.hits["x"].to_numpy())
    (val,) = dm.fixed_events("val")
    (want,) = simulate(1, seed=dm.seeds["val"], first_event_id=dm.seeds["val"], volumes=[7, 8, 9], pileup=1.0)
    assert np.array_equal(val.hits["x"].to_numpy(), want.hits["x"].to_numpy())


def test_each_ddp_rank_simulates_its_own_events() -> None:
    """Two DDP processes must not train on the same events; rank 0 keeps the one-process stream."""
    import numpy as np

    from trackformers.training.datamodule import SimulatedStream

    dm = TrackDataModule(volumes=[7, 8, 9], pileup=2.0, train_seed=9, n_val_events=1)
    x = {rank: [e.hits["x"].to_numpy() for e, _ in
                zip(SimulatedStream(seed=9, simulation=dm.simulation, max_hits=10**6, config=dm.config,
                                    rank=rank).events(), range(2))]
         for rank in (0, 1)}
    single = [e.hits["x"].to_numpy() for e, _ in
              zip(SimulatedStream(seed=9, simulation=dm.simulation, max_hits=10**6, config=dm.config).events(),
                  range(2))]
    assert all(np.array_equal(a, b) for a, b in zip(x[0], single))
    assert not any(len(a) == len(b) and np.array_equal(a, b) for a in x[0] for b in x[1])


def test_ddp_ranks_read_disjoint_file_events(tmp_path: Path) -> None:
    """Rank r of R takes every R-th event of the training files (one reader per process here): disjoint
    shares that cover every event; a reader left without events says so instead of spinning forever."""
    from trackformers.errors import InputError
    from trackformers.training.datamodule import FileStream

    write_events(list(simulate(5, seed=3, pileup=1, volumes=[7, 8, 9])), tmp_path / "ev", format="csv")
    dm = TrackDataModule(volumes=[7, 8, 9])

    def stream(rank: int, world: int) -> FileStream:
        return FileStream(files=[str(tmp_path / "ev")], read_options={}, max_hits=10**6, config=dm.config,
                          repeat=True, rank=rank, world=world)

    shares = [[e.event_id for e in islice(stream(r, 2).events(), 6)] for r in (0, 1)]
    first = [e.event_id for e in islice(stream(0, 1).events(), 5)]
    assert shares[0] == first[0::2] * 2 and shares[1] == first[1::2] * 3  # each pass repeats its share
    assert not set(shares[0]) & set(shares[1]) and set(shares[0]) | set(shares[1]) == set(first)
    with pytest.raises(InputError, match="5 event\\(s\\) for 6 readers"):
        list(islice(stream(5, 6).events(), 1))
