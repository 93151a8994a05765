"""Fresh simulated events on the fly for training: a torch ``IterableDataset``, no files needed.

Events are numbered globally, 0, 1, 2, …; event ``i`` always has seed ``event_seed(seed, i)`` (the same as
``simulate(n, seed=seed)``), and the DataLoader workers of all ranks share the numbers out round-robin:
stream ``k`` of ``K = world_size * num_workers`` (``k = rank * num_workers + worker_id``) makes events
``k, k + K, k + 2K, …``. So every worker and rank sees different events, and the set of events does not
depend on how many workers or ranks there are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from trackformers.errors import InputError
from trackformers.simulation import ENGINES, _check_seed, event_seed, simulate_event
from trackformers.simulation.generator import check_pileup
from trackformers.simulation.geometry import select_volumes


def _distributed() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed when initialised, else from the environment, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class SimulatedEvents(IterableDataset):
    """Iterable dataset of simulated events (or ``transform(event)``), forever or ``n_events`` in total.

    Args:
        seed: base seed (non-negative int).
        pileup, volumes, engine, config: as for :func:`trackformers.simulation.simulate_event`.
        n_events: total events over all workers and ranks (None: endless).
        transform: applied to each :class:`~trackformers.events.Event` before it is yielded.
        rank, world_size: override the distributed rank / world size (default: torch.distributed or the
            ``RANK`` / ``WORLD_SIZE`` environment variables).
        first_event_id: event id of event 0.
    """

    def __init__(self, *, seed: int = 0, pileup: float = 0.0, volumes: object = None, engine: str = "builtin",
                 n_events: int | None = None, transform: Callable[[Any], Any] | None = None,
                 rank: int | None = None, world_size: int | None = None, first_event_id: int = 0,
                 **config: object) -> None:
        super().__init__()
        self.seed = _check_seed(seed)
        self.pileup = check_pileup(pileup)
        self.volumes = select_volumes(volumes)
        if engine not in ENGINES:
            raise InputError(f"unknown simulation engine '{engine}'; expected one of {', '.join(ENGINES)}.")
        if n_events is not None and (isinstance(n_events, bool) or int(n_events) < 1):
            raise InputError(f"n_events = {n_events!r}; expected a positive integer or None (endless).")
        if engine == "builtin":
            from trackformers.simulation.builtin import Config

            Config.from_options(dict(config))  # unknown or bad options fail here, not in a worker
        self.engine = engine
        self.n_events = None if n_events is None else int(n_events)
        self.transform = transform
        self.rank, self.world_size = rank, world_size
        self.first_event_id = int(first_event_id)
        self.config = dict(config)

    def __len__(self) -> int:
        if self.n_events is None:
            raise TypeError("an endless SimulatedEvents has no length")
        return self.n_events

    def stream(self) -> tuple[int, int]:
        """(this iterator's stream index k, number of streams K) for the current worker and rank."""
        rank, world = _distributed()
        rank = rank if self.rank is None else int(self.rank)
        world = world if self.world_size is None else int(self.world_size)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world * workers

    def indices(self) -> Iterator[int]:
        """Global event numbers made by this worker/rank, in order."""
        k, n_streams = self.stream()
        i = k
        while self.n_events is None or i < self.n_events:
            yield i
            i += n_streams

    def __iter__(self) -> Iterator[Any]:
        for i in self.indices():
            event = simulate_event(seed=event_seed(self.seed, i), pileup=self.pileup, volumes=self.volumes,
                                   engine=self.engine, event_id=self.first_event_id + i, **self.config)
            yield event if self.transform is None else self.transform(event)
