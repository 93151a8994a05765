"""``TrackDataModule``: packed varlen batches, limited by total hits, from files or the simulator.

Training data is an endless stream: either events simulated on the fly (a fresh, reproducible seed per event
and per DataLoader worker, from :func:`trackformers.simulation.simulate_event`) or the training files read
again and again. Validation / test / predict events are fixed: read from files or simulated once from their
own seeds (``val_seed`` / ``test_seed``), which never overlap the training stream's seed tree.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from trackformers.batch import PackedBatch
from trackformers.errors import InputError
from trackformers.features import FeatureConfig, pack_events
from trackformers.training import pl


def pack_by_hits(
    events: Iterator[Any], *, max_hits: int, config: FeatureConfig, keep_events: bool = False
) -> Iterator[PackedBatch]:
    """Group consecutive events into batches of at most ``max_hits`` hits (a larger event goes alone)."""
    pending: list[Any] = []
    total = 0
    for event in events:
        n = len(event.hits)
        if pending and total + n > max_hits:
            yield pack_events(pending, config, keep_events=keep_events)
            pending, total = [], 0
        pending.append(event)
        total += n
    if pending:
        yield pack_events(pending, config, keep_events=keep_events)


def skip_consumed(batches: Iterator[PackedBatch], consumed: int) -> Iterator[PackedBatch]:
    """Drop the batches a resumed run already trained on (``consumed`` of the whole loader, all workers).

    DataLoader workers are read round-robin, so worker ``w`` of ``W`` produced the loader's batches
    ``w, w + W, ...``: it skips the ``ceil((consumed - w) / W)`` of them that come before ``consumed``.
    """
    info = get_worker_info()
    worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
    own = max(0, -(-(consumed - worker) // workers))
    return itertools.islice(batches, own, None) if own else batches


class SimulatedStream(IterableDataset):
    """Endless packed batches of simulated events; event i of worker w uses seed (seed, w, i), and on DDP
    rank r > 0 seed (seed, w, i, r): every process trains on its own events (rank 0 keeps the
    single-process stream, so one-process runs are unchanged)."""

    def __init__(
        self, *, seed: int, simulation: dict[str, Any], max_hits: int, config: FeatureConfig, rank: int = 0
    ) -> None:
        super().__init__()
        self.seed, self.simulation, self.max_hits, self.config = seed, simulation, max_hits, config
        self.rank = rank
        self.consumed = 0  # batches a resumed run has already trained on (set by the data module)

    def events(self) -> Iterator[Any]:
        from trackformers.simulation import simulate_event

        info = get_worker_info()
        worker = 0 if info is None else info.id
        i = 0
        mix = self.simulation.get("pileup")
        while True:
            seq = np.random.SeedSequence(self.seed, spawn_key=(worker, i) + ((self.rank,) if self.rank else ()))
            sim = self.simulation
            if isinstance(mix, list | tuple):  # a pile-up mix: event i takes μ = mix[i mod len(mix)]
                sim = {**sim, "pileup": float(mix[i % len(mix)])}
            yield simulate_event(seed=seq, event_id=i, **sim)
            i += 1

    def __iter__(self) -> Iterator[PackedBatch]:
        batches = pack_by_hits(self.events(), max_hits=self.max_hits, config=self.config)
        return skip_consumed(batches, self.consumed)


class FileStream(IterableDataset):
    """Packed batches of the events of ``files``, read again on every pass (``repeat``) or once.

    The events are dealt round-robin to the readers: data worker w of DDP rank r of R (W workers each) takes
    events i with i mod (R·W) = r·W + w, so no two processes train on the same event.
    """

    def __init__(
        self,
        *,
        files: list[str],
        read_options: dict[str, Any],
        max_hits: int,
        config: FeatureConfig,
        repeat: bool,
        keep_events: bool = False,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        super().__init__()
        self.files, self.read_options, self.max_hits, self.config = files, read_options, max_hits, config
        self.rank, self.world = rank, world
        self.repeat, self.keep_events = repeat, keep_events
        self.consumed = 0  # batches a resumed run has already trained on (set by the data module)

    def events(self) -> Iterator[Any]:
        from trackformers.io import read_events

        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        readers, reader = self.world * workers, self.rank * workers + worker
        while True:
            n = mine = 0
            for n, event in enumerate(read_events(self.files, **self.read_options), start=1):
                if (n - 1) % readers == reader:
                    mine += 1
                    yield event
            if not self.repeat:
                return
            if not mine:  # an endless stream with nothing to deal out would spin forever
                raise InputError(f"training files {', '.join(map(str, self.files[:3]))}"
                                 f"{' ...' if len(self.files) > 3 else ''}: {n} event(s) for {readers} readers "
                                 f"({self.world} process(es) x {workers} data worker(s)); expected at least one "
                                 "event per reader: use fewer --data.num_workers or processes.")

    def __iter__(self) -> Iterator[PackedBatch]:
        batches = pack_by_hits(
            self.events(), max_hits=self.max_hits, config=self.config, keep_events=self.keep_events
        )
        return skip_consumed(batches, self.consumed)


def _identity(x: Any) -> Any:
    return x


def _own_generator() -> torch.Generator:
    """A DataLoader draws its workers' base seed when an iterator starts; from its own generator, not the
    global one, so a resumed run's random draws (restored from the checkpoint) match an uninterrupted run's.
    The streams seed themselves (``SeedSequence``), so the base seed is unused."""
    return torch.Generator().manual_seed(0)


def fixed_pileup(pileup: float | list[float] | tuple[float, ...]) -> float:
    """μ of the fixed (val/test/predict) simulated events: the value itself, or a mix's last entry."""
    return float(pileup[-1]) if isinstance(pileup, list | tuple) else float(pileup)


class TrackDataModule(pl.LightningDataModule):
    """Args:
    train_files / val_files / test_files / predict_files: paths, folders or globs (any reader format);
        a stage without files uses the simulator.
    file_format: force a reader format (None = detect). volumes: TrackML volume ids to keep (e.g.
        [7, 8, 9] = the pixel detector; None = all).
    pileup: μ of simulated events; a list mixes them in the training stream (event i of a worker takes
        ``pileup[i mod len]``; fixed stages use the last entry). engine: simulation engine.
        simulation: extra simulator options (e.g. ``{"gun": 20}`` for a particle gun, ``{"noise": 0.1}``).
    train_seed / val_seed / test_seed: seeds of the three simulated streams (distinct seed trees).
    n_val_events / n_test_events / n_predict_events: simulated events per fixed stage.
    max_hits_per_batch: batches hold at most this many hits (one larger event forms a batch alone).
    features: :class:`FeatureConfig` fields; the CLI links them to the model's.
    num_workers: DataLoader workers for the training stream.
    """

    def __init__(
        self,
        train_files: list[str] | None = None,
        val_files: list[str] | None = None,
        test_files: list[str] | None = None,
        predict_files: list[str] | None = None,
        file_format: str | None = None,
        volumes: list[int] | None = None,
        pileup: float | list[float] = 0.0,
        engine: str = "builtin",
        simulation: dict[str, Any] | None = None,
        train_seed: int = 1,
        val_seed: int = 1_000_003,
        test_seed: int = 2_000_003,
        n_val_events: int = 4,
        n_test_events: int = 4,
        n_predict_events: int = 2,
        max_hits_per_batch: int = 60_000,
        features: dict[str, Any] | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.files = {"train": train_files, "val": val_files, "test": test_files, "predict": predict_files}
        self.file_format, self.volumes = file_format, volumes
        self.simulation = {"pileup": pileup, "engine": engine, "volumes": volumes, **(simulation or {})}
        self.seeds = {"train": train_seed, "val": val_seed, "test": test_seed, "predict": test_seed + 1}
        self.n_events = {"val": n_val_events, "test": n_test_events, "predict": n_predict_events}
        self.max_hits = max_hits_per_batch
        self.config = FeatureConfig(**(features or {}))
        self.num_workers = num_workers
        self._fixed: dict[str, list[PackedBatch]] = {}

    def _read_options(self) -> dict[str, Any]:
        return {"volumes": self.volumes, "format": self.file_format}

    def fixed_events(self, stage: str) -> list[Any]:
        """The events of a fixed stage (val/test/predict), from files or simulated from the stage's seed."""
        if self.files[stage]:
            from trackformers.io import read_events

            return list(read_events(self.files[stage], **self._read_options()))
        from trackformers.simulation import simulate

        return list(
            simulate(
                self.n_events[stage],
                seed=self.seeds[stage],
                first_event_id=self.seeds[stage],
                **{**self.simulation, "pileup": fixed_pileup(self.simulation["pileup"])},
            )
        )

    def _fixed_loader(self, stage: str) -> DataLoader:
        if stage not in self._fixed:
            events = self.fixed_events(stage)
            self._fixed[stage] = list(
                pack_by_hits(iter(events), max_hits=self.max_hits, config=self.config, keep_events=True)
            )
        return DataLoader(self._fixed[stage], batch_size=None, collate_fn=_identity, generator=_own_generator())

    def train_dataloader(self) -> DataLoader:
        if self.files["train"]:
            data: IterableDataset = FileStream(
                files=self.files["train"],
                read_options=self._read_options(),
                max_hits=self.max_hits,
                config=self.config,
                repeat=True,
                rank=self.trainer.global_rank if self.trainer is not None else 0,
                world=self.trainer.world_size if self.trainer is not None else 1,
            )
        else:
            data = SimulatedStream(
                seed=self.seeds["train"],
                simulation=self.simulation,
                max_hits=self.max_hits,
                config=self.config,
                rank=self.trainer.global_rank if self.trainer is not None else 0,
            )
        # A run resumed from a mid-epoch checkpoint (the stream is endless: every checkpoint is mid-epoch)
        # continues the stream where the checkpoint left it, so it trains on the same batches as an
        # uninterrupted run. train_dataloader is called after Lightning restored the loops' progress.
        data.consumed = self._consumed_batches()
        return DataLoader(
            data,
            batch_size=None,
            collate_fn=_identity,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            generator=_own_generator(),
        )

    def _consumed_batches(self) -> int:
        """Training batches already fetched by the restored fit loop (0 on a fresh run or without trainer)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        return int(trainer.fit_loop.epoch_loop.batch_progress.total.ready)

    def val_dataloader(self) -> DataLoader:
        return self._fixed_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._fixed_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._fixed_loader("predict")
