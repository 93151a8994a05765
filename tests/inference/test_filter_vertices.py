"""The hit filter's vertex hypotheses: one pass per z_v on the event moved by −z_v, a hit's probability the
maximum over the passes; the default stored in the filter checkpoint; the ``--filter-vertex-z`` flag."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from trackformers.cli import main
from trackformers.errors import InputError
from trackformers.events import Event
from trackformers.filtering import HitFilter, write_settings
from trackformers.io import write_events
from trackformers.io.submission import read_submission
from trackformers.simulation import simulate
from trackformers.training.module import TrackingModule

ENCODER = {"class_path": "trackformers.models.encoder.Encoder",
           "init_args": {"d_model": 16, "n_heads": 2, "n_layers": 1, "backend": "dense", "window": None}}
TRACKER = {"encoder": ENCODER,
           "task": {"class_path": "trackformers.models.tasks.EmbeddingTask", "init_args": {"dim": 4}}}


def tiny_filter(seed: int = 3, vertex_z: list[float] | None = None) -> TrackingModule:
    torch.manual_seed(seed)
    task = {"class_path": "trackformers.models.tasks.HitFilterTask", "init_args": {"dim": 0}}
    if vertex_z is not None:
        task["init_args"]["vertex_z"] = vertex_z
    return TrackingModule(encoder=ENCODER, task=task).eval()


@pytest.fixture(scope="module")
def event() -> Event:
    return next(iter(simulate(1, seed=53, pileup=3, volumes=(7, 8, 9))))


def one_pass(module: TrackingModule, event: Event, z_vertex: float) -> np.ndarray:
    """Reference: the filter's keep probability on the event whose hits are moved by hand to z − z_vertex."""
    hits = event.hits.copy()
    hits["z"] = (hits["z"].astype(np.float64) - z_vertex).astype(event.hits["z"].dtype)
    moved = Event(event_id=event.event_id, hits=hits, truth=event.truth, particles=event.particles,
                  source=event.source)
    with torch.no_grad():
        _, out = module.event_outputs(moved)
    return torch.sigmoid(out["keep_logit"].float()).numpy()


def test_probability_is_the_maximum_over_the_passes(event: Event) -> None:
    module = tiny_filter()
    zs = [-60.0, 0.0, 45.0]
    passes = np.stack([one_pass(module, event, z) for z in zs])
    # the passes must differ, or the maximum below could not tell a wrong translation from a right one
    assert np.abs(passes[0] - passes[1]).max() > 1e-3 and np.abs(passes[2] - passes[1]).max() > 1e-3
    got = HitFilter(module, vertex_z=zs).probability(event)
    np.testing.assert_allclose(got, passes.max(0), rtol=0, atol=1e-5)  # η from float32 r, z
    np.testing.assert_allclose(HitFilter(module).probability(event), passes[1], rtol=0, atol=1e-6)
    # the sign: hypothesis +45 moves the event by -45 (a vertex at z = +45 mm lands on the origin)
    np.testing.assert_allclose(HitFilter(module, vertex_z=[45.0]).probability(event), passes[2], rtol=0, atol=1e-5)
    assert np.abs(passes[2] - one_pass(module, event, -45.0)).max() > 1e-3


def test_more_hypotheses_keep_a_superset(event: Event) -> None:
    module = tiny_filter()
    single = HitFilter(module)
    single.threshold = float(np.median(single.probability(event)))
    several = HitFilter(module, single.threshold, vertex_z=[-80.0, 0.0, 80.0])
    one, many = single.keep(event), several.keep(event)
    assert np.all(many[one]) and many.sum() > one.sum()
    assert several.hits_seen == len(event.hits) and several.hits_kept == int(many.sum())


def test_default_comes_from_the_task_and_the_checkpoint(tmp_path: Path, event: Event) -> None:
    assert HitFilter(tiny_filter()).vertex_z == (0.0,)
    assert HitFilter(tiny_filter(vertex_z=[-50, 50])).vertex_z == (-50.0, 50.0)
    assert HitFilter(tiny_filter(vertex_z=[-50, 50]), vertex_z=[7]).vertex_z == (7.0,)
    plain = tiny_filter().export_checkpoint(tmp_path / "plain.ckpt")
    write_settings(plain, tmp_path / "set.ckpt", vertex_z=[-40, 0, 40], threshold=0.6, note="test")
    loaded = HitFilter.load(tmp_path / "set.ckpt", torch.device("cpu"))
    assert loaded.vertex_z == (-40.0, 0.0, 40.0) and loaded.threshold == 0.6
    assert HitFilter.load(plain, torch.device("cpu")).vertex_z == (0.0,)  # the source is untouched
    saved = torch.load(tmp_path / "set.ckpt", weights_only=True)
    assert saved["trackformers"]["filter_settings"]["note"] == "test"
    np.testing.assert_array_equal(loaded.probability(event),
                                  HitFilter(tiny_filter(), vertex_z=[-40, 0, 40]).probability(event))


@pytest.mark.parametrize("values", [[], [float("nan")], [0.0, float("inf")]])
def test_bad_hypotheses_are_refused(values: list[float], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="vertex hypotheses"):
        HitFilter(tiny_filter(), vertex_z=values)
    plain = tiny_filter().export_checkpoint(tmp_path / "plain.ckpt")
    with pytest.raises(InputError, match="vertex hypotheses"):  # [] too: the task would read it as (0.0,)
        write_settings(plain, tmp_path / "bad.ckpt", vertex_z=values)
    assert not (tmp_path / "bad.ckpt").exists() and not list(tmp_path.glob(".bad.ckpt.*"))


def test_settings_only_for_a_filter(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tracker = TrackingModule(**TRACKER).export_checkpoint(tmp_path / "tracker.ckpt")
    with pytest.raises(InputError, match=r"tracker\.ckpt: its task is .*EmbeddingTask; expected a hit filter"):
        write_settings(tracker, tmp_path / "bad.ckpt", threshold=0.5)
    assert not (tmp_path / "bad.ckpt").exists() and not list(tmp_path.glob(".bad.ckpt.*"))


# ---------------------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, event: Event) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vertex_cli")
    write_events([event], root / "events", format="csv")
    torch.manual_seed(0)
    return {"events": root / "events",
            "tracker": TrackingModule(**TRACKER).eval().export_checkpoint(root / "tracker.ckpt"),
            "filter": tiny_filter().export_checkpoint(root / "filter.ckpt")}


def reconstruct(setup: dict[str, Path], out: Path, *extra: str) -> int:
    return main(["reconstruct", str(setup["events"]), "--checkpoint", str(setup["tracker"]), "--out", str(out),
                 "--no-progress", "--device", "cpu", "--clusterer", "dbscan", "--param", "eps=0.01", *extra])


def test_cli_vertex_hypotheses(tmp_path: Path, setup: dict[str, Path], event: Event,
                               capsys: pytest.CaptureFixture[str]) -> None:
    zs = [-80.0, 0.0, 80.0]
    hit_filter = HitFilter(tiny_filter(), vertex_z=zs)
    hit_filter.threshold = float(np.median(hit_filter.probability(event)))
    args = ("--filter", str(setup["filter"]), "--filter-threshold", repr(hit_filter.threshold))
    assert reconstruct(setup, tmp_path / "one", *args) == 0
    assert reconstruct(setup, tmp_path / "three", *args, "--filter-vertex-z=-80,0,80") == 0
    text = capsys.readouterr().out
    kept_three = int(hit_filter.keep(event).sum())
    assert f"hit filter kept {kept_three} of {len(event.hits)} hits" in text
    name = f"{event.name}-submission.csv"
    three = read_submission(tmp_path / "three" / name)
    # every hit the three passes drop is a singleton track; more hits reach the tracker than with one pass
    dropped = set(event.hits["hit_id"].to_numpy()[~hit_filter.keep(event)])
    sizes = three["track_id"].map(three["track_id"].value_counts())
    assert (sizes[three["hit_id"].isin(dropped)] == 1).all()
    one = read_submission(tmp_path / "one" / name)
    assert one["track_id"].nunique() > three["track_id"].nunique()


def test_cli_cuda_graphs_with_the_filter(tmp_path: Path, setup: dict[str, Path], event: Event) -> None:
    # off CUDA both GraphedForwards run eagerly: the same submission, and the filter's one must wrap the filter
    # module (the tracker's module has no keep_logit output)
    args = ("--filter", str(setup["filter"]), "--filter-threshold", "0.5", "--filter-vertex-z=-80,0,80")
    assert reconstruct(setup, tmp_path / "eager", *args) == 0
    assert reconstruct(setup, tmp_path / "graphs", *args, "--cuda-graphs") == 0
    name = f"{event.name}-submission.csv"
    eager, graphs = read_submission(tmp_path / "eager" / name), read_submission(tmp_path / "graphs" / name)
    assert eager.equals(graphs) and eager["track_id"].nunique() < len(event.hits)


@pytest.mark.parametrize(("extra", "message"), [
    (("--filter", "FILTER", "--filter-vertex-z", "0,x"), "--filter-vertex-z 0,x: expected comma-separated"),
    (("--filter", "FILTER", "--filter-vertex-z", "nan"), "expected comma-separated finite"),
    (("--filter-vertex-z", "0,40"), "--filter-vertex-z needs --filter"),
])
def test_cli_bad_vertex_hypotheses(tmp_path: Path, setup: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                   extra: tuple[str, ...], message: str) -> None:
    status = reconstruct(setup, tmp_path / "out", *(str(setup["filter"]) if x == "FILTER" else x for x in extra))
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(re.escape(message), err)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# ---------------------------------------------------------------------------------------------- CUDA graphs
def graphed_filter_run(event: Event, device: torch.device) -> tuple[np.ndarray, np.ndarray, object]:
    """Probabilities of a 3-hypothesis filter (local attention) eagerly and through a GraphedForward."""
    from trackformers.cuda_graph import GraphedForward

    torch.manual_seed(5)
    encoder = {**ENCODER, "init_args": {**ENCODER["init_args"], "d_model": 32, "backend": "local", "window": 16,
                                              "n_layers": 2}}
    module = TrackingModule(encoder=encoder, task={"class_path": "trackformers.models.tasks.HitFilterTask",
                                                   "init_args": {"dim": 0}}).eval().to(device)
    hit_filter = HitFilter(module, vertex_z=[-60.0, 0.0, 60.0])
    forward = GraphedForward(module)
    return hit_filter.probability(event), hit_filter.probability(event, forward=forward), forward


def test_graphed_filter_off_cuda_runs_eagerly(event: Event, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # the banded torch path on a CPU
    eager, graphed, forward = graphed_filter_run(event, torch.device("cpu"))
    np.testing.assert_array_equal(graphed, eager)
    assert forward.reason and not forward.graphs


@pytest.mark.gpu
def test_graphed_filter_equals_eager_on_cuda(event: Event) -> None:
    eager, graphed, forward = graphed_filter_run(event, torch.device("cuda"))
    assert forward.reason is None and len(forward.graphs) == 1  # the three passes share one length bucket
    np.testing.assert_allclose(graphed, eager, rtol=0, atol=2e-5)
