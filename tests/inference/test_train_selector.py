"""benchmarks/train_selector.py end to end: reconstructed events with truth in, a loadable selector and record out."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from bench_scripts import benchmark_script

from trackformers.clustering.selection import TrackSelector
from trackformers.io import write_events
from trackformers.io.submission import write_submission
from trackformers.simulation import simulate


def script() -> ModuleType:
    return benchmark_script("train_selector")


def test_trains_measures_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, seed in (("train", 5), ("val", 6)):
        events = list(simulate(2, seed=seed, pileup=3, volumes=(7, 8, 9)))
        write_events(events, tmp_path / name, format="csv")
        for event in events:  # the truth's tracks, every third pair of particles merged into one (mostly fakes)
            truth = event.truth.set_index("hit_id").loc[event.hits["hit_id"], "particle_id"].to_numpy()
            ids = pd.Series(truth).astype("category").cat.codes.to_numpy().astype(np.int64)
            ids = np.where(ids % 6 == 1, ids - 1, ids)
            write_submission(pd.DataFrame({"hit_id": event.hits["hit_id"], "track_id": ids}),
                             tmp_path / f"sub_{name}" / f"{event.name}-submission.csv", event_id=event.event_id)
    out = tmp_path / "sel.pt"
    rc = script().main(["--train", str(tmp_path / "train"), str(tmp_path / "sub_train"), "--val",
                        str(tmp_path / "val"), str(tmp_path / "sub_val"), "--out", str(out), "--epochs", "30",
                        "--cuts", "0.2,0.5", "--max-eff-loss", "1"])
    text = capsys.readouterr().out
    assert rc == 0 and "chosen cut" in text and "none" in text
    assert 0 < record_fakes(text) < 1
    record = json.loads(out.with_suffix(".json").read_text())
    assert [row["cut"] for row in record["val_table"]] == [None, 0.2, 0.5]
    assert record["train"] == [["train", "sub_train"]] and record["train_tracks"] > 0
    allowed = record["val_table"][1:]  # --max-eff-loss 1: every cut is allowed
    assert record["cut"] == min(allowed, key=lambda row: row["fake_rate"])["cut"]
    selector = TrackSelector.load(out)
    assert selector.cut == record["cut"] and selector.meta["val_table"] == record["val_table"]


def test_missing_submission_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_events(list(simulate(1, seed=7, pileup=0, volumes=(7, 8, 9))), tmp_path / "ev", format="csv")
    rc = script().main(["--train", str(tmp_path / "ev"), str(tmp_path / "nosub"), "--val", str(tmp_path / "ev"),
                        str(tmp_path / "nosub"), "--out", str(tmp_path / "sel.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and "no such submission" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sel.pt").exists()


def record_fakes(text: str) -> float:
    """The fake rate of the 'none' row of the printed table."""
    row = next(line for line in text.splitlines() if line.split()[:1] == ["none"])
    return float(row.split()[2])


def test_one_class_only_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = list(simulate(1, seed=8, pileup=0, volumes=(7, 8, 9)))
    write_events(events, tmp_path / "ev", format="csv")
    event = events[0]
    truth = event.truth.set_index("hit_id").loc[event.hits["hit_id"], "particle_id"].to_numpy()
    write_submission(pd.DataFrame({"hit_id": event.hits["hit_id"], "track_id": truth}),
                     tmp_path / "sub" / f"{event.name}-submission.csv", event_id=event.event_id)
    args = [str(tmp_path / "ev"), str(tmp_path / "sub")]
    rc = script().main(["--train", *args, "--val", *args, "--out", str(tmp_path / "sel.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and "expected both real and fake tracks" in err and len(err.strip().splitlines()) == 1
