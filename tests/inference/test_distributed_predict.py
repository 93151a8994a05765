"""Distributed prediction: two CPU processes (gloo, DDP) write every event exactly once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from trackformers.inference import reconstruct_files
from trackformers.io import write_events
from trackformers.io.submission import read_submission
from trackformers.prediction_writer import manifest_path, predict_distributed, share
from trackformers.simulation import simulate

#: fork-started DDP processes inherit the imports (seconds saved); spawn where fork is unavailable.
STRATEGY = "ddp_fork" if "fork" in multiprocessing.get_all_start_methods() else "ddp_spawn"
TINY_MODEL = {
    "encoder": {"class_path": "trackformers.models.encoder.Encoder",
                "init_args": {"d_model": 16, "n_heads": 2, "n_layers": 1, "backend": "dense",
                              "window": None}},
    "task": {"class_path": "trackformers.models.tasks.EmbeddingTask", "init_args": {"dim": 4}},
}


@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 13])
@pytest.mark.parametrize(("world", "workers"), [(1, 1), (2, 1), (3, 2), (8, 1)])
def test_shares_are_disjoint_and_cover(n: int, world: int, workers: int) -> None:
    units = list(range(n))
    parts = [share(units, rank=r, world=world, worker=w, workers=workers)
             for r in range(world) for w in range(workers)]
    flat = [u for p in parts for u in p]
    assert sorted(flat) == units  # nothing lost, nothing doubled
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced


def test_two_cpu_processes_write_each_event_once(tmp_path: Path) -> None:
    from trackformers.training.module import TrackingModule

    module = TrackingModule(**TINY_MODEL).eval()
    events = list(simulate(5, seed=2024, pileup=0, volumes=(7, 8, 9), gun=5))
    write_events(events, tmp_path / "events", format="csv")
    out = tmp_path / "ddp"
    predict_distributed([tmp_path / "events"], model=module, out_dir=out, accelerator="cpu", devices=2,
                        strategy=STRATEGY)
    written = [manifest_path(out, r).read_text().split() for r in (0, 1)]
    assert all(written)  # both ranks did work
    assert sorted(written[0] + written[1]) == sorted(e.name for e in events)  # each event exactly once
    # The same job in one process gives the same submissions.
    reconstruct_files([tmp_path / "events"], module=module, out_dir=tmp_path / "single", progress=False)
    for event in events:
        got = read_submission(out / f"{event.name}-submission.csv")
        ref = read_submission(tmp_path / "single" / f"{event.name}-submission.csv")
        assert sorted(got["hit_id"]) == sorted(event.hits["hit_id"])
        assert got.equals(ref)


def test_two_processes_run_the_whole_mu200_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Filter, cleaning and selection in Lightning predict over two processes: the same submissions as one process."""
    import torch

    from trackformers.clustering.selection import TrackSelector
    from trackformers.filtering import HitFilter
    from trackformers.inference import CHECKPOINT_DIR, load_module

    monkeypatch.setenv("TRITON_INTERPRET", "0")  # the banded torch path on the CPU (forked ranks inherit it)
    cpu = torch.device("cpu")
    tracker = load_module(CHECKPOINT_DIR / "tracker_mu200.ckpt", cpu)
    hit_filter = HitFilter.load(CHECKPOINT_DIR / "filter.ckpt", cpu)
    selector = TrackSelector.load(CHECKPOINT_DIR / "selector_mu200.pt")
    events = list(simulate(2, seed=2025, pileup=1, volumes=(7, 8, 9)))
    write_events(events, tmp_path / "events", format="csv")
    out = tmp_path / "ddp"
    predict_distributed([tmp_path / "events"], model=tracker, out_dir=out, accelerator="cpu", devices=2,
                        strategy=STRATEGY, hit_filter=hit_filter, clean={}, selector=selector)
    reconstruct_files([tmp_path / "events"], module=tracker, out_dir=tmp_path / "single", progress=False,
                      hit_filter=hit_filter, clean={}, selector=selector)
    plain = tmp_path / "plain"  # without the stages: other tracks, so the stages did run in the ranks
    reconstruct_files([tmp_path / "events"], module=tracker, out_dir=plain, progress=False)
    differs = False
    for event in events:
        got = read_submission(out / f"{event.name}-submission.csv")
        assert got.equals(read_submission(tmp_path / "single" / f"{event.name}-submission.csv"))
        differs |= not got.equals(read_submission(plain / f"{event.name}-submission.csv"))
    assert differs
