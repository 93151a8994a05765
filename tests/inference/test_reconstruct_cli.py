"""``trackformers reconstruct`` / ``demo`` / ``tune`` end to end with a tiny untrained checkpoint."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trackformers import inference
from trackformers.cli import main
from trackformers.io import write_events
from trackformers.io.submission import read_submission
from trackformers.simulation import simulate


@pytest.fixture(scope="module")
def events() -> list:
    return list(simulate(3, seed=97, pileup=2, volumes=(7, 8, 9)))


@pytest.fixture()
def event_dir(tmp_path: Path, events: list) -> Path:
    write_events(events, tmp_path / "events", format="csv")
    return tmp_path / "events"


def assert_complete(path: Path, event) -> None:  # noqa: ANN001 - Event
    sub = read_submission(path)
    assert sorted(sub["hit_id"]) == sorted(event.hits["hit_id"])  # every hit exactly once
    assert (sub["event_id"] == event.event_id).all()


def no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".part")]


def test_reconstruct_csv_with_evaluate(tmp_path: Path, event_dir: Path, events: list, checkpoint: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    status = main(["reconstruct", str(event_dir), "--checkpoint", str(checkpoint), "--out", str(out),
                   "--evaluate", "--no-progress", "--clusterer", "gpu", "--param", "radius=0.3"])
    assert status == 0
    for event in events:
        assert_complete(out / f"{event.name}-submission.csv", event)
    text = capsys.readouterr().out
    assert f"events 3, hits {sum(len(e) for e in events)}" in text
    for stage in inference.STAGES:
        assert stage in text
    assert "dm_efficiency" in text and "fake_rate" in text


def test_reconstruct_parquet_and_volumes(tmp_path: Path, event_dir: Path, events: list,
                                         checkpoint: Path) -> None:
    out = tmp_path / "out"
    assert main(["reconstruct", str(event_dir / "event*-hits.csv"), "--checkpoint", str(checkpoint),
                 "--out", str(out), "--format", "parquet", "--volumes", "8", "--no-progress"]) == 0
    table = pd.read_parquet(out / "submission.parquet")
    for event in events:
        pixel8 = event.hits.loc[event.hits["volume_id"] == 8, "hit_id"]
        rows = table[table["event_id"] == event.event_id]
        assert sorted(rows["hit_id"]) == sorted(pixel8)


def test_reconstruct_from_parquet_events(tmp_path: Path, events: list, checkpoint: Path) -> None:
    write_events(events, tmp_path / "pq", format="parquet")
    out = tmp_path / "out"
    assert main(["reconstruct", str(tmp_path / "pq"), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--no-progress"]) == 0
    for event in events:
        assert_complete(out / f"{event.name}-submission.csv", event)


def break_event(event_dir: Path, name: str) -> Path:
    """Drop the ``x`` column of one event's hits file (a realistic broken input)."""
    path = event_dir / f"{name}-hits.csv"
    pd.read_csv(path).drop(columns=["x"]).to_csv(path, index=False)
    return path


def test_on_error_fail_stops_with_one_clear_error(tmp_path: Path, event_dir: Path, events: list,
                                                  checkpoint: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = break_event(event_dir, events[1].name)
    out = tmp_path / "out"
    status = main(["reconstruct", str(event_dir), "--checkpoint", str(checkpoint), "--out", str(out),
                   "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2
    assert str(bad) in err and "missing column(s) x" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert_complete(out / f"{events[0].name}-submission.csv", events[0])  # done before the bad one
    assert not (out / f"{events[1].name}-submission.csv").exists()
    assert not (out / f"{events[2].name}-submission.csv").exists()
    assert no_partial_files(out)


def test_on_error_skip_reports_and_goes_on(tmp_path: Path, event_dir: Path, events: list, checkpoint: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = break_event(event_dir, events[0].name)
    garbage = tmp_path / "broken.parquet"
    garbage.write_bytes(b"not a parquet file at all")
    out = tmp_path / "out"
    status = main(["reconstruct", str(garbage), str(tmp_path / "missing_dir"), str(event_dir),
                   "--checkpoint", str(checkpoint), "--out", str(out), "--on-error", "skip", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 0
    skipped = [line for line in err.splitlines() if line.startswith("trackformers: skipped")]
    assert len(skipped) == 3
    assert any(str(garbage) in s for s in skipped) and any("missing_dir" in s for s in skipped)
    assert any(str(bad) in s for s in skipped)
    assert not (out / f"{events[0].name}-submission.csv").exists()
    for event in events[1:]:
        assert_complete(out / f"{event.name}-submission.csv", event)
    assert no_partial_files(out)


def test_duplicate_event_is_an_error(tmp_path: Path, event_dir: Path, checkpoint: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    prefix = str(event_dir / "event000000000")
    status = main(["reconstruct", prefix, prefix, "--checkpoint", str(checkpoint), "--out",
                   str(tmp_path / "out"), "--no-progress"])
    assert status == 2 and "already read" in capsys.readouterr().err


def test_missing_shipped_checkpoint_says_what_to_do(tmp_path: Path, event_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(inference, "CHECKPOINT_DIR", tmp_path / "nowhere")
    assert main(["reconstruct", str(event_dir), "--out", str(tmp_path / "out")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err
    assert not (tmp_path / "demo").exists()  # failed before simulating anything


def test_bad_options(tmp_path: Path, event_dir: Path, checkpoint: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    base = ["reconstruct", str(event_dir), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]
    assert main([*base, "--volumes", "7,x"]) == 2
    assert main([*base, "--param", "radius=0.1"]) == 2  # the checkpoint's dbscan has no radius
    assert main([*base, "--clusterer", "dbscan", "--param", "bogus=1"]) == 2
    assert main([*base[:-4], "--checkpoint", str(tmp_path / "none.ckpt"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 4


def test_param_alone_applies_to_the_checkpoints_clusterer(tmp_path: Path, event_dir: Path, events: list,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from trackformers.training.module import TrackingModule

    stored = {"name": "dbscan", "eps": 0.25, "min_samples": 3}  # the checkpoint's own clusterer and values
    encoder = {"class_path": "trackformers.models.encoder.Encoder",
               "init_args": {"d_model": 16, "n_heads": 2, "n_layers": 1, "backend": "dense", "window": None}}
    task = {"class_path": "trackformers.models.tasks.EmbeddingTask", "init_args": {"dim": 4, "clusterer": stored}}
    ckpt = TrackingModule(encoder=encoder, task=task).export_checkpoint(tmp_path / "dbscan3.ckpt")
    base = ["reconstruct", str(event_dir), "--checkpoint", str(ckpt), "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "stored")]) == 0
    assert main([*base, "--out", str(tmp_path / "param"), "--param", "eps=0.01"]) == 0
    # the same as naming the clusterer with the checkpoint's other values: --param changed eps only
    assert main([*base, "--out", str(tmp_path / "named"), "--clusterer", "dbscan", "--param", "eps=0.01",
                 "--param", "min_samples=3"]) == 0
    changed = False
    for event in events:
        name = f"{event.name}-submission.csv"
        param, named = read_submission(tmp_path / "param" / name), read_submission(tmp_path / "named" / name)
        pd.testing.assert_frame_equal(param, named)
        changed |= not param.equals(read_submission(tmp_path / "stored" / name))
    assert changed  # eps 0.01 against the stored 0.25: the value reached the clusterer
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "bad"), "--param", "radius=0.3"]) == 2
    err = capsys.readouterr().err
    assert err == ("trackformers: error: --param radius=0.3: dbscan, the checkpoint's clusterer, has no parameter "
                   "radius; expected one of eps, min_samples, n_jobs, or --clusterer NAME for another clusterer.\n")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(("option", "value", "needle"),
                         [("--devices", "0", "--devices 0: expected at least 1 process per node."),
                          ("--devices", "-1", "--devices -1: expected at least 1 process per node."),
                          ("--num-nodes", "0", "--num-nodes 0: expected at least 1 node.")])
def test_process_counts_below_one_are_refused(tmp_path: Path, event_dir: Path, checkpoint: Path,
                                              capsys: pytest.CaptureFixture[str], option: str, value: str,
                                              needle: str) -> None:
    status = main(["reconstruct", str(event_dir), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
                   "--no-progress", option, value])
    assert status == 2 and capsys.readouterr().err == f"trackformers: error: {needle}\n"
    assert not (tmp_path / "o").exists()  # refused before any work, not run in one process


def test_unknown_backend_is_blamed_on_the_option(tmp_path: Path, event_dir: Path, checkpoint: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["reconstruct", str(event_dir), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
                   "--backend", "bogus"])
    assert status == 2
    assert capsys.readouterr().err == ("trackformers: error: --backend bogus: unknown attention backend; expected "
                                       "auto or one of dense, flex, local, reference.\n")


def test_out_that_is_a_file(tmp_path: Path, event_dir: Path, checkpoint: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    base = ["reconstruct", str(event_dir), "--checkpoint", str(checkpoint), "--no-progress"]
    assert main([*base, "--out", str(afile)]) == 2
    assert main([*base, "--out", str(afile / "sub"), "--format", "parquet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"trackformers: error: --out {afile}: is a file, not a folder; expected a folder for the output.",
                   f"trackformers: error: --out {afile / 'sub'}: {afile} is a file, not a folder."]
    assert afile.read_text() == "keep me"


def test_demo_end_to_end(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--checkpoint", str(checkpoint), "--out", str(out), "--events", "2",
                 "--pileup", "1", "--seed", "12345"]) == 0
    text = capsys.readouterr().out
    assert "dm_efficiency" in text and "events 2" in text
    assert len(list((out / "submissions").glob("*-submission.csv"))) == 2
    assert (out / "metrics.json").is_file()
    try:
        import trackformers.plots  # noqa: F401
    except ImportError:
        return
    assert list((out / "plots").glob("efficiency_pt.png"))


def test_tune_scans_values(tmp_path: Path, event_dir: Path, checkpoint: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", str(event_dir), "--checkpoint", str(checkpoint), "--clusterer", "dbscan",
                 "--scan", "eps=0.05,0.5", "--param", "min_samples=2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["eps", "DM", "eff"]
    assert [line.split()[0] for line in lines[2:]] == ["0.05", "0.5"]


def test_tune_writes_the_best_value_into_a_checkpoint_copy(tmp_path: Path, event_dir: Path, checkpoint: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    out = tmp_path / "tuned.ckpt"
    assert main(["tune", str(event_dir), "--checkpoint", str(checkpoint), "--clusterer", "dbscan",
                 "--scan", "eps=0.0001,0.02,5.0", "--param", "min_samples=2", "--write", str(out)]) == 0
    assert main(["tune", str(event_dir), "--checkpoint", str(checkpoint), "--clusterer", "hdbscan",
                 "--scan", "min_cluster_size=2,3", "--write", str(tmp_path / "h.ckpt")]) == 0
    spec = torch.load(tmp_path / "h.ckpt", weights_only=True)["hyper_parameters"]["task"]["init_args"]["clusterer"]
    assert type(spec["min_cluster_size"]) is int  # an integer scan stays integer
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:5]]
    scores = {float(r[0]): float(r[5]) for r in rows}
    best = max(scores, key=scores.get)
    original = torch.load(checkpoint, weights_only=True)
    tuned = torch.load(out, weights_only=True)
    assert tuned["hyper_parameters"]["task"]["init_args"]["clusterer"] == {"name": "dbscan", "min_samples": 2,
                                                                          "eps": best}
    assert len(tuned["trackformers"]["tuned"]["table"]) == 3
    for key, value in original["state_dict"].items():  # weights untouched
        assert torch.equal(value, tuned["state_dict"][key])
    module = inference.load_module(out, torch.device("cpu"))
    assert module.task.clusterer_spec["eps"] == best


@pytest.mark.parametrize(("name", "params"),
                         [("dbscan", {"eps": 0.02}), ("gpu", {"radius": 0.02, "window": 8})])
def test_tuning_replay_equals_running_the_model(checkpoint: Path, events: list, name: str,
                                                params: dict) -> None:
    import torch

    from trackformers.clustering import make_clusterer, same_partition
    from trackformers.clustering.tuning import _submission, record

    module = inference.load_module(checkpoint, torch.device("cpu"))
    clusterer = make_clusterer(name, **params)
    for event in events[:2]:
        rec = record(module, event)
        assert rec is not None and rec.hit_ids is not None
        direct = module.reconstruct(event, clusterer=clusterer).sort_values("hit_id")
        replay = _submission(module, event, rec, clusterer).sort_values("hit_id")
        assert direct["hit_id"].tolist() == replay["hit_id"].tolist()
        a, b = (torch.from_numpy(s["track_id"].to_numpy()) for s in (direct, replay))
        assert same_partition(a, b) and 1 < int(a.max()) + 1 < len(a)  # a non-trivial partition


def test_tune_write_to_a_folder_is_refused_before_the_scan(tmp_path: Path, event_dir: Path, checkpoint: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["tune", str(event_dir), "--checkpoint", str(checkpoint), "--clusterer", "dbscan",
                   "--scan", "eps=0.1", "--write", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 2 and "is a folder" in err and len(err.strip().splitlines()) == 1
    assert "DM eff" not in out  # refused before scanning


@pytest.mark.parametrize("flag", ["--cuda-graphs", "--compile"])
def test_one_process_options_with_several_processes_are_refused(tmp_path: Path, event_dir: Path, checkpoint: Path,
                                                               capsys: pytest.CaptureFixture[str], flag: str) -> None:
    status = main(["reconstruct", str(event_dir), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
                   flag, "--devices", "2"])
    assert status == 2 and f"{flag} works in one process" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_precision_choice(tmp_path: Path, event_dir: Path, events: list, checkpoint: Path) -> None:
    import torch

    from trackformers.errors import InputError

    cpu = torch.device("cpu")
    assert inference.resolve_precision("auto", cpu) == "fp32"  # bf16 only where a CUDA GPU has it
    assert inference.resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(InputError, match="--precision fp16: unknown precision"):
        inference.resolve_precision("fp16", cpu)
    # the distributed path hands the same choice to Lightning's Trainer
    assert inference.lightning_precision("bf16", cpu) == "bf16-mixed"
    assert inference.lightning_precision("fp32", cpu) == inference.lightning_precision("auto", cpu) == "32-true"
    with inference.autocast_for("bf16", cpu):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with inference.autocast_for("fp32", cpu):
        assert not torch.is_autocast_enabled("cpu")
    # bf16 end to end: the model runs under bf16 autocast (seen by a hook), every hit is written once
    module = inference.load_module(checkpoint, cpu)
    seen: list[bool] = []
    module.encoder.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    out = tmp_path / "out"
    inference.reconstruct_files([event_dir], module=module, out_dir=out, precision="bf16", progress=False,
                                clusterer=None)
    assert seen == [True] * len(events)
    for event in events:
        assert_complete(out / f"{event.name}-submission.csv", event)
    inference.reconstruct_files([event_dir], module=module, out_dir=tmp_path / "fp32", progress=False)
    assert seen[len(events):] == [False] * len(events)  # fp32 is the default
    assert main(["reconstruct", str(event_dir), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "cli"),
                 "--no-progress", "--precision", "bf16"]) == 0


def test_summary_reports_gpu_memory_only_when_measured() -> None:
    summary = inference.Summary(events=1)
    assert "GPU memory" not in summary.format()
    summary.gpu_memory = (260 * 2**20, 462 * 2**20)
    assert "peak GPU memory 260 MB allocated, 462 MB reserved" in summary.format()


def test_expandable_segments_respect_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:64")
    assert not inference.prefer_expandable_segments()
    assert inference.os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:64"
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF")
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    import torch

    if torch.cuda.is_initialized():
        pytest.skip("CUDA already initialised in this process: the allocator setting can no longer change")
    assert inference.prefer_expandable_segments()
    assert inference.os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"


@pytest.mark.gpu
def test_cuda_run_reports_its_memory_and_stage_peaks(tmp_path: Path, event_dir: Path, events: list,
                                                    checkpoint: Path) -> None:
    import torch

    module = inference.load_module(checkpoint, torch.device("cuda"))
    summary = inference.reconstruct_files([event_dir], module=module, out_dir=tmp_path / "out",
                                          device=torch.device("cuda"), precision="bf16", cuda_graphs=True)
    assert summary.gpu_memory == (torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved())
    assert summary.gpu_memory[0] > 0
    assert "peak GPU memory" in summary.format()
    from trackformers.clustering import make_clusterer

    timer = inference.StageTimer(torch.device("cuda"))
    torch.cuda.reset_peak_memory_stats()
    inference.reconstruct_event(module, events[0], make_clusterer("gpu", radius=0.3), timer)
    # the clusterer's stage is the last to allocate: its end is the event's peak, its start the model's
    assert timer.peak_after["clustering"] == torch.cuda.max_memory_allocated()
    assert 0 < timer.peak_before["clustering"] <= timer.peak_after["clustering"]


def test_hits_outside_the_trained_volumes_get_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped models were trained on the pixel volumes: on full-detector events (TrackML's files hold every
    volume) the run says how many hits lie outside them and how to keep only those; with --volumes it is quiet."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # the banded torch path on the CPU
    full = list(simulate(1, seed=5, pileup=0))  # every volume
    write_events(full, tmp_path / "full", format="csv")
    shipped = inference.CHECKPOINT_DIR / "best.ckpt"
    outside = int((~full[0].hits["volume_id"].isin([7, 8, 9])).sum())
    assert 0 < outside < len(full[0].hits)
    args = ["reconstruct", str(tmp_path / "full"), "--checkpoint", str(shipped), "--no-progress", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert (f"note: {outside} of the {len(full[0].hits)} hits lie outside volumes 7,8,9, the only ones the model "
            "was trained on, so its tracks there are not measured; --volumes 7,8,9 reconstructs only those") in out
    assert main([*args, "--out", str(tmp_path / "b"), "--volumes", "pixel"]) == 0
    assert "note:" not in capsys.readouterr().out


def test_trained_volumes_come_from_the_checkpoint_metadata() -> None:
    from trackformers.training.module import TrackingModule, _trained_volumes

    assert TrackingModule.load_checkpoint(inference.CHECKPOINT_DIR / "tracker_mu200.ckpt").trained_volumes == [7, 8, 9]
    assert _trained_volumes({"volumes": [7, 8, 9]}) == [7, 8, 9]
    for info in (None, {}, {"volumes": []}, {"volumes": "7,8,9"}, {"volumes": [7, True]}, {"volumes": [7.0]}):
        assert _trained_volumes(info) is None, info
