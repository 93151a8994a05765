"""Two-stage reconstruction: HitFilter (keep / subset / merge), reconstruct_event with a filter, and the
``reconstruct --filter`` command, with tiny untrained models whose keep decision is forced where the answer
must be known."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trackformers.cli import main
from trackformers.clustering import make_clusterer, same_partition
from trackformers.errors import InputError
from trackformers.events import Event
from trackformers.filtering import HitFilter
from trackformers.inference import STAGES, StageTimer, reconstruct_event
from trackformers.io import write_events
from trackformers.io.submission import check_submission, read_submission
from trackformers.simulation import simulate
from trackformers.training.module import TrackingModule

ENCODER = {"class_path": "trackformers.models.encoder.Encoder",
           "init_args": {"d_model": 16, "n_heads": 2, "n_layers": 1, "backend": "dense", "window": None}}
TRACKER = {"encoder": ENCODER,
           "task": {"class_path": "trackformers.models.tasks.EmbeddingTask", "init_args": {"dim": 4}}}
FILTER = {"encoder": ENCODER,
          "task": {"class_path": "trackformers.models.tasks.HitFilterTask", "init_args": {"dim": 0}}}


def tiny(spec: dict, seed: int = 0, bias: float | None = None) -> TrackingModule:
    """A tiny module; ``bias`` sets the filter head's keep-logit bias (±large forces every decision)."""
    torch.manual_seed(seed)
    module = TrackingModule(**spec).eval()
    if bias is not None:
        with torch.no_grad():
            module.task.head[-1].weight[0].zero_()
            module.task.head[-1].bias[0] = bias
    return module


def mid_gap(p: np.ndarray) -> float:
    """A cut in the widest gap between the middle half of the probabilities ``p``: it keeps some hits and
    drops others, and float noise cannot move a hit across it."""
    ranked = np.sort(p)
    lo = len(p) // 4
    gap = int(np.argmax(np.diff(ranked[lo: 3 * len(p) // 4]))) + lo
    return float(ranked[gap] + ranked[gap + 1]) / 2


@pytest.fixture(scope="module")
def event() -> Event:
    return next(iter(simulate(1, seed=31, pileup=2, volumes=(7, 8, 9))))


@pytest.fixture(scope="module")
def tracker() -> TrackingModule:
    return tiny(TRACKER)


@pytest.fixture()
def clusterer() -> object:
    return make_clusterer("dbscan", eps=0.01, min_samples=2)


def run(tracker: TrackingModule, event: Event, clusterer: object, hit_filter: HitFilter | None = None,
        **kw: object) -> pd.DataFrame:
    return reconstruct_event(tracker, event, clusterer, StageTimer(), hit_filter=hit_filter, **kw)


def several_tracks(sub: pd.DataFrame) -> bool:
    """Many tracks of several hits: a comparison of groupings means something on such an output."""
    sizes = sub["track_id"].value_counts()
    return int((sizes > 1).sum()) >= 10 and int(sizes.max()) < len(sub) // 4


def test_tracker_output_has_real_tracks(tracker: TrackingModule, event: Event, clusterer: object) -> None:
    assert several_tracks(run(tracker, event, clusterer))


def test_everything_kept_equals_the_tracker_alone(tracker: TrackingModule, event: Event,
                                                 clusterer: object) -> None:
    alone = run(tracker, event, clusterer)
    low = HitFilter(tiny(FILTER, seed=1), threshold=1e-6)  # sigmoid of an untrained head is far above it
    pd.testing.assert_frame_equal(run(tracker, event, clusterer, low), alone)
    assert low.hits_kept == low.hits_seen == len(event.hits)
    forced = HitFilter(tiny(FILTER, bias=1e4))
    pd.testing.assert_frame_equal(run(tracker, event, clusterer, forced), alone)


def test_everything_dropped_gives_singletons(tracker: TrackingModule, event: Event, clusterer: object) -> None:
    hit_filter = HitFilter(tiny(FILTER, bias=-1e4))
    assert not hit_filter.keep(event).any()
    sub = run(tracker, event, clusterer, hit_filter)
    check_submission(event, sub)
    assert np.array_equal(sub["hit_id"], event.hits["hit_id"])
    assert sub["track_id"].nunique() == len(event.hits)


def test_min_hits_keeps_sparse_events_whole(tracker: TrackingModule, event: Event, clusterer: object) -> None:
    n = len(event.hits)
    alone = tracker.reconstruct(event, clusterer=clusterer)
    sparse = HitFilter(tiny(FILTER, bias=-1e4), min_hits=n + 1)  # drops everything, but the event is below the cut
    assert sparse.keep(event).all() and sparse.hits_seen == sparse.hits_kept == n
    pd.testing.assert_frame_equal(run(tracker, event, clusterer, sparse), alone)
    dense = HitFilter(tiny(FILTER, bias=-1e4), min_hits=n)  # at the cut the filter runs
    assert not dense.keep(event).any()
    with pytest.raises(InputError, match="min_hits -1"):
        HitFilter(tiny(FILTER), min_hits=-1)


def test_random_mask_subset_and_merge(tracker: TrackingModule, event: Event, clusterer: object) -> None:
    keep = np.random.default_rng(5).random(len(event.hits)) < 0.6
    part = HitFilter.subset(event, keep)
    assert np.array_equal(part.hits["hit_id"], event.hits["hit_id"][keep])
    assert set(part.truth["hit_id"]) == set(part.hits["hit_id"])
    pd.testing.assert_frame_equal(part.particles, event.particles)
    tracked = tracker.reconstruct(part, clusterer=clusterer)
    merged = HitFilter.merge(event, keep, tracked.iloc[::-1])  # the tracker's row order must not matter
    check_submission(event, merged)
    assert np.array_equal(merged["hit_id"], event.hits["hit_id"])
    counts = merged["track_id"].map(merged["track_id"].value_counts())
    assert (counts[~keep] == 1).all()  # every dropped hit is its own track
    assert not set(merged["track_id"][~keep]) & set(merged["track_id"][keep])
    assert np.array_equal(merged["track_id"][keep], tracked["track_id"])  # same ids, same grouping
    assert same_partition(torch.tensor(merged["track_id"][keep].to_numpy()),
                          torch.tensor(tracked["track_id"].to_numpy()))
    assert several_tracks(tracked)


def test_subset_keeps_cells_of_kept_hits_only(event: Event) -> None:
    ids = event.hits["hit_id"].to_numpy()
    cells = pd.DataFrame({"hit_id": np.repeat(ids, 2)[::-1].copy(), "ch0": 1, "ch1": 2, "value": 0.5})
    keep = np.arange(len(ids)) % 3 == 0
    part = HitFilter.subset(dataclasses.replace(event, cells=cells), keep)
    assert sorted(part.cells["hit_id"]) == sorted(np.repeat(ids[keep], 2))


def test_keep_is_in_hits_table_order(event: Event) -> None:
    # a deliberately unsorted event: hits shuffled (not by hit_id, not by φ), truth in yet another order
    rng = np.random.default_rng(3)
    order = rng.permutation(len(event.hits))
    shuffled = dataclasses.replace(event, hits=event.hits.iloc[order].reset_index(drop=True),
                                   truth=event.truth.sample(frac=1.0, random_state=4)).validate()
    hit_filter = HitFilter(tiny(FILTER, seed=2))
    p = hit_filter.probability(event)
    q = hit_filter.probability(shuffled)
    assert p.std() > 1e-3  # hits differ, so a wrong order would show
    np.testing.assert_allclose(q, p[order], rtol=1e-5, atol=1e-6)
    hit_filter.threshold = mid_gap(p)
    assert 0 < hit_filter.keep(event).sum() < len(p)
    assert np.array_equal(hit_filter.keep(shuffled), hit_filter.keep(event)[order])


def test_empty_event_and_nothing_kept(tracker: TrackingModule, event: Event, clusterer: object) -> None:
    empty = dataclasses.replace(event, hits=event.hits.iloc[:0], truth=event.truth.iloc[:0])
    hit_filter = HitFilter(tiny(FILTER))
    assert hit_filter.keep(empty).shape == (0,)
    assert len(HitFilter.subset(empty, np.zeros(0, bool)).hits) == 0
    assert len(HitFilter.merge(empty, np.zeros(0, bool), run(tracker, empty, clusterer))) == 0
    assert len(run(tracker, empty, clusterer, hit_filter)) == 0
    none = np.zeros(len(event.hits), bool)
    nothing = HitFilter.subset(event, none)
    assert len(nothing.hits) == len(nothing.truth) == 0
    merged = HitFilter.merge(event, none, run(tracker, nothing, clusterer))
    assert sorted(merged["track_id"]) == list(range(len(event.hits)))


def test_bad_inputs_are_refused(tracker: TrackingModule, event: Event) -> None:
    with pytest.raises(InputError, match=r"tracker\.ckpt.*keep_logit"):
        HitFilter(tracker, source="tracker.ckpt")
    for bad in (0.0, 1.0, 2.0):
        with pytest.raises(InputError, match="in \\(0, 1\\)"):
            HitFilter(tiny(FILTER), threshold=bad)
    with pytest.raises(InputError, match="keep mask"):
        HitFilter.subset(event, np.ones(len(event.hits) - 1, bool))
    with pytest.raises(InputError, match="keep mask"):
        HitFilter.subset(event, np.ones(len(event.hits), int))
    keep = np.ones(len(event.hits), bool)
    short = pd.DataFrame({"hit_id": event.hits["hit_id"][1:], "track_id": 0})
    with pytest.raises(InputError, match="one row per kept hit"):
        HitFilter.merge(event, keep, short)


def test_tracker_keeps_its_forward_and_time_is_booked_as_model(tracker: TrackingModule, event: Event,
                                                               clusterer: object) -> None:
    calls: list[int] = []

    def forward(batch: object) -> dict:
        calls.append(len(batch.hit_ids))
        return tracker(batch)

    keep_all = HitFilter(tiny(FILTER, bias=1e4))
    timer = StageTimer()
    sub = reconstruct_event(tracker, event, clusterer, timer, forward=forward, hit_filter=keep_all)
    assert calls == [len(event.hits)]  # the tracker ran through forward once; the filter ran eagerly
    pd.testing.assert_frame_equal(sub, run(tracker, event, clusterer))
    assert tuple(timer.seconds) == STAGES and timer.seconds["model"] > 0


# ---------------------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("filter_ckpts")
    return {"tracker": tiny(TRACKER).export_checkpoint(root / "tracker.ckpt"),
            "filter": tiny(FILTER, seed=2).export_checkpoint(root / "filter.ckpt"),
            "keep_all": tiny(FILTER, bias=1e4).export_checkpoint(root / "keep_all.ckpt")}


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return list(simulate(2, seed=41, pileup=2, volumes=(7, 8, 9)))


@pytest.fixture(scope="module")
def event_dir(tmp_path_factory: pytest.TempPathFactory, events: list[Event]) -> Path:
    folder = tmp_path_factory.mktemp("filter_events") / "events"
    write_events(events, folder, format="csv")
    return folder


def reconstruct(event_dir: Path, out: Path, checkpoints: dict[str, Path], *extra: str) -> int:
    return main(["reconstruct", str(event_dir), "--checkpoint", str(checkpoints["tracker"]), "--out", str(out),
                 "--no-progress", "--device", "cpu", "--clusterer", "dbscan", "--param", "eps=0.01", *extra])


def test_cli_with_filter(tmp_path: Path, event_dir: Path, events: list[Event], checkpoints: dict[str, Path],
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert reconstruct(event_dir, tmp_path / "alone", checkpoints) == 0
    assert reconstruct(event_dir, tmp_path / "all", checkpoints, "--filter", str(checkpoints["keep_all"])) == 0
    hit_filter = HitFilter(tiny(FILTER, seed=2))
    hit_filter.threshold = mid_gap(np.concatenate([hit_filter.probability(e) for e in events]))
    assert reconstruct(event_dir, tmp_path / "some", checkpoints, "--filter", str(checkpoints["filter"]),
                       "--filter-threshold", repr(hit_filter.threshold), "--evaluate") == 0
    text = capsys.readouterr().out
    hits = sum(len(e) for e in events)
    assert f"hit filter kept {hits} of {hits} hits (100.0%)" in text
    kept = sum(int(hit_filter.keep(e).sum()) for e in events)
    assert 0 < kept < hits and f"hit filter kept {kept} of {hits} hits" in text
    assert "dm_efficiency" in text
    # --filter-min-hits above every event: the same filter and threshold leave every event whole
    big = str(max(len(e) for e in events) + 1)
    assert reconstruct(event_dir, tmp_path / "sparse", checkpoints, "--filter", str(checkpoints["filter"]),
                       "--filter-threshold", repr(hit_filter.threshold), "--filter-min-hits", big) == 0
    assert f"hit filter kept {hits} of {hits} hits (100.0%)" in capsys.readouterr().out
    for e in events:
        name = f"{e.name}-submission.csv"
        alone, every = read_submission(tmp_path / "alone" / name), read_submission(tmp_path / "all" / name)
        pd.testing.assert_frame_equal(every, alone)
        pd.testing.assert_frame_equal(read_submission(tmp_path / "sparse" / name), alone)
        check_submission(e, read_submission(tmp_path / "some" / name))


@pytest.mark.parametrize(("extra", "message"), [
    (("--filter", "TRACKER"), "keep_logit"),
    # the reverse mistake: a pure filter as the tracker would give every hit its own track, and exit 0
    (("--checkpoint", "FILTER"), "filter.ckpt: it is a hit filter .*builds no tracks; pass it with --filter CKPT"),
    (("--filter", "missing.ckpt"), "no such file"),
    (("--filter", "FILTER", "--filter-threshold", "1.5"), "expected a keep probability in \\(0, 1\\)"),
    (("--filter-threshold", "0.5"), "needs --filter"),
    (("--filter-min-hits", "100"), "--filter-min-hits needs --filter"),
    (("--filter", "FILTER", "--filter-min-hits", "-3"), "expected a number of hits >= 0"),
])
def test_cli_bad_filter(tmp_path: Path, event_dir: Path, checkpoints: dict[str, Path],
                        capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str) -> None:
    names = {"TRACKER": str(checkpoints["tracker"]), "FILTER": str(checkpoints["filter"]),
             "missing.ckpt": str(tmp_path / "missing.ckpt")}
    status = reconstruct(event_dir, tmp_path / "out", checkpoints, *(names.get(x, x) for x in extra))
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
