"""``trackformers reconstruct --pipeline NAME``: the shipped pipelines as one option, equal to their explicit options;
the demo's default pipeline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trackformers.cli import main
from trackformers.inference import CHECKPOINT_DIR
from trackformers.io import write_events
from trackformers.io.submission import read_submission
from trackformers.simulation import simulate

EXPLICIT = {
    "mu20": ["--checkpoint", str(CHECKPOINT_DIR / "best.ckpt"), "--clean",
             "--selector", str(CHECKPOINT_DIR / "selector_mu20.pt")],
    "mu200": ["--filter", str(CHECKPOINT_DIR / "filter.ckpt"),
              "--checkpoint", str(CHECKPOINT_DIR / "tracker_mu200.ckpt"),
              "--clean", "--selector", str(CHECKPOINT_DIR / "selector_mu200.pt")],
}


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("events")
    write_events(list(simulate(1, seed=97, pileup=3, volumes=(7, 8, 9))), folder, format="csv")
    return folder


def submission(folder: Path) -> pd.DataFrame:
    (path,) = folder.glob("*-submission.csv")
    return read_submission(path).sort_values("hit_id", ignore_index=True)


@pytest.mark.parametrize("name", ["mu20", "mu200"])
def test_pipeline_equals_its_explicit_options(name: str, events: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # the banded torch path on a CPU (the interpreter is slow)
    base = ["reconstruct", str(events), "--no-progress", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "preset"), "--pipeline", name]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"pipeline {name}: ") and "--clean" in line and f"selector_{name}.pt" in line
    assert ("filter.ckpt" in line) == (name == "mu200")
    assert main([*base, "--out", str(tmp_path / "explicit"), *EXPLICIT[name]]) == 0
    preset, explicit = submission(tmp_path / "preset"), submission(tmp_path / "explicit")
    assert preset.equals(explicit) and (preset["track_id"].value_counts() >= 3).any()


def test_explicit_options_take_precedence(events: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    base = ["reconstruct", str(events), "--no-progress", "--device", "cpu", "--pipeline", "mu200"]
    other = str(CHECKPOINT_DIR / "selector_mu20.pt")
    assert main([*base, "--out", str(tmp_path / "a"), "--selector", other, "--filter-threshold", "0.9"]) == 0
    out = capsys.readouterr().out
    assert f"selector {other}" in out and "selector_mu200" not in out and "tracker_mu200.ckpt" in out
    # the same run spelled out: the filter's threshold and the other selector applied to the mu200 pair
    assert main(["reconstruct", str(events), "--no-progress", "--device", "cpu", "--out", str(tmp_path / "b"),
                 *EXPLICIT["mu200"][:-1], other, "--filter-threshold", "0.9"]) == 0
    assert submission(tmp_path / "a").equals(submission(tmp_path / "b"))


def test_no_clean_switches_the_pipelines_cleaning_off(events: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """--no-clean under --pipeline equals the pipeline's options spelled out without --clean (and differs from it)."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    base = ["reconstruct", str(events), "--no-progress", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "a"), "--pipeline", "mu20", "--no-clean"]) == 0
    assert "no cleaning" in capsys.readouterr().out.splitlines()[0]
    spelled = [a for a in EXPLICIT["mu20"] if a != "--clean"]
    assert main([*base, "--out", str(tmp_path / "b"), *spelled]) == 0
    assert main([*base, "--out", str(tmp_path / "c"), "--pipeline", "mu20"]) == 0
    off, cleaned = submission(tmp_path / "a"), submission(tmp_path / "c")
    assert off.equals(submission(tmp_path / "b")) and not off.equals(cleaned)


def test_demo_runs_the_mu20_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Without --checkpoint the demo reconstructs with the shipped mu20 pipeline (cleaning and selection)."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--events", "1", "--pileup", "3", "--device", "cpu", "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "--clean" in text and "selector_mu20.pt" in text and "(--pipeline mu20)" in text
    (path,) = (out / "submissions").glob("*-submission.csv")
    assert main(["reconstruct", str(out / "events"), "--out", str(tmp_path / "explicit"), "--no-progress",
                 "--device", "cpu", "--volumes", "7,8,9", *EXPLICIT["mu20"]]) == 0
    assert read_submission(path).sort_values("hit_id", ignore_index=True).equals(submission(tmp_path / "explicit"))


def test_another_model_under_a_pipeline_is_noted(events: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """--checkpoint under --pipeline keeps the pipeline's selector, trained behind another model: the run says so."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    base = ["reconstruct", str(events), "--no-progress", "--device", "cpu", "--pipeline", "mu20"]
    own = str(CHECKPOINT_DIR / "tracker_mu200.ckpt")
    assert main([*base, "--out", str(tmp_path / "a"), "--checkpoint", own]) == 0
    out = capsys.readouterr().out
    assert "note: selector_mu20.pt was trained behind best.ckpt" in out and f"tracker {own}" in out
    assert main([*base, "--out", str(tmp_path / "b")]) == 0
    assert "note:" not in capsys.readouterr().out
