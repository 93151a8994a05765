"""Track cleaning in the main job: ``reconstruct_event(clean=...)`` and ``trackformers reconstruct --clean``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackformers import inference
from trackformers.cli import main
from trackformers.clustering.cleaning import clean_tracks
from trackformers.io import write_events
from trackformers.io.submission import read_submission
from trackformers.simulation import simulate

CUT = {"max_transverse_mm": 0.5, "max_z_mm": 2.0, "iterations": 3}


@pytest.fixture(scope="module")
def events() -> list:
    return list(simulate(2, seed=97, pileup=2, volumes=(7, 8, 9)))


def test_reconstruct_event_clean_equals_cleaning_the_submission(checkpoint: Path, events: list) -> None:
    import torch

    module = inference.load_module(checkpoint, torch.device("cpu"))
    for event in events:
        plain = inference.reconstruct_event(module, event, None, inference.StageTimer())
        timer = inference.StageTimer()
        got = inference.reconstruct_event(module, event, None, timer, clean=CUT)
        hits = event.hits.set_index("hit_id").loc[plain["hit_id"].to_numpy()]
        want = clean_tracks(hits["x"].to_numpy(), hits["y"].to_numpy(), hits["z"].to_numpy(),
                            plain["track_id"].to_numpy(), **CUT)
        np.testing.assert_array_equal(got["hit_id"].to_numpy(), plain["hit_id"].to_numpy())
        np.testing.assert_array_equal(got["track_id"].to_numpy(), want)
        assert (want != plain["track_id"].to_numpy()).any()  # the untrained model's tracks do get cleaned
        assert timer.seconds["clustering"] > 0.0
    empty = events[0].__class__(event_id=9, hits=events[0].hits.iloc[:0], source="empty")
    assert len(inference.reconstruct_event(module, empty, None, inference.StageTimer(), clean={})) == 0


def test_cli_clean_end_to_end(tmp_path: Path, events: list, checkpoint: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    write_events(events, tmp_path / "events", format="csv")
    base = ["reconstruct", str(tmp_path / "events"), "--checkpoint", str(checkpoint), "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    params = [f"--clean-param={k}={v}" for k, v in CUT.items()]
    assert main([*base, "--out", str(tmp_path / "clean"), "--clean", *params, "--evaluate"]) == 0
    assert "fake_rate" in capsys.readouterr().out
    changed = 0
    for event in events:
        plain = read_submission(tmp_path / "plain" / f"{event.name}-submission.csv")
        got = read_submission(tmp_path / "clean" / f"{event.name}-submission.csv")
        assert sorted(got["hit_id"]) == sorted(event.hits["hit_id"])  # every hit exactly once
        both = pd.merge(plain, got, on="hit_id", suffixes=("_plain", "_clean"))
        pairs = both[["track_id_plain", "track_id_clean"]].drop_duplicates()
        assert not pairs["track_id_clean"].duplicated().any()  # cleaning only splits tracks
        changed += int(pairs["track_id_plain"].duplicated().sum())
    assert changed > 0


def test_cli_clean_bad_options(tmp_path: Path, events: list, checkpoint: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    write_events(events[:1], tmp_path / "events", format="csv")
    base = ["reconstruct", str(tmp_path / "events"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]
    assert main([*base, "--clean-param", "max_z_mm=2"]) == 2  # without --clean
    assert main([*base, "--clean", "--clean-param", "bogus=1"]) == 2
    assert main([*base, "--clean", "--clean-param", "max_z_mm=-1"]) == 2
    assert main([*base, "--clean", "--clean-param", "max_z_mm"]) == 2  # no "=": the error names the option
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 4
    assert "--clean-param max_z_mm: expected KEY=VALUE" in err
    assert "--clean-param needs --clean" in err and "bogus" in err
