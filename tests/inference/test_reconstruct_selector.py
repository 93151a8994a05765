"""Track selection in the main job: ``reconstruct_event(selector=...)`` and ``trackformers reconstruct --selector``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trackformers import inference
from trackformers.cli import main
from trackformers.clustering.selection import TrackSelector, select_submission
from trackformers.io import write_events
from trackformers.io.submission import read_submission
from trackformers.simulation import simulate


@pytest.fixture(scope="module")
def events() -> list:
    return list(simulate(2, seed=98, pileup=2, volumes=(7, 8, 9)))


def constant(bias: float) -> TrackSelector:
    """A selector whose probability is sigmoid(bias) for every track."""
    selector = TrackSelector()
    with torch.no_grad():
        for p in selector.parameters():
            p.zero_()
        selector.net[-1].bias.fill_(bias)
    return selector.eval()


def long_tracks(sub) -> int:
    return int((sub["track_id"].value_counts() >= 3).sum())


def test_reconstruct_event_selector_after_cleaning(checkpoint: Path, events: list) -> None:
    module = inference.load_module(checkpoint, torch.device("cpu"))
    for event in events:
        cleaned = inference.reconstruct_event(module, event, None, inference.StageTimer(), clean={})
        assert long_tracks(cleaned) > 0
        keep_all = inference.reconstruct_event(module, event, None, inference.StageTimer(), clean={},
                                               selector=constant(20.0))
        assert keep_all.equals(cleaned)
        drop_all = inference.reconstruct_event(module, event, None, inference.StageTimer(), clean={},
                                               selector=constant(-20.0))
        assert long_tracks(drop_all) == 0 and len(drop_all) == len(cleaned)
        assert drop_all.equals(select_submission(event.hits, cleaned, constant(-20.0)))


def test_cli_selector_end_to_end(tmp_path: Path, events: list, checkpoint: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    write_events(events, tmp_path / "events", format="csv")
    constant(-20.0).save(tmp_path / "drop.pt")
    base = ["reconstruct", str(tmp_path / "events"), "--checkpoint", str(checkpoint), "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "sel"), "--selector", str(tmp_path / "drop.pt"), "--evaluate"]) == 0
    assert "fake_rate" in capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "cut0"), "--selector", str(tmp_path / "drop.pt"),
                 "--selector-cut", "0"]) == 0
    for event in events:
        name = f"{event.name}-submission.csv"
        plain, got = (read_submission(tmp_path / d / name) for d in ("plain", "sel"))
        assert sorted(got["hit_id"]) == sorted(event.hits["hit_id"]) and long_tracks(got) == 0 < long_tracks(plain)
        np.testing.assert_array_equal(read_submission(tmp_path / "cut0" / name)["track_id"], plain["track_id"])


def test_cli_selector_bad_options(tmp_path: Path, events: list, checkpoint: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    write_events(events[:1], tmp_path / "events", format="csv")
    constant(0.0).save(tmp_path / "sel.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    base = ["reconstruct", str(tmp_path / "events"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]
    assert main([*base, "--selector-cut", "0.5"]) == 2
    assert main([*base, "--selector", str(tmp_path / "junk.pt")]) == 2
    assert main([*base, "--selector", str(tmp_path / "sel.pt"), "--selector-cut", "1.5"]) == 2
    assert main([*base, "--selector", str(tmp_path / "random.pt")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 4
    assert "--selector-cut needs --selector" in err and "junk.pt" in err and "--selector-cut) 1.5" in err
    # random bytes are an unreadable file, not a refused one (torch's 'Unsupported operand' means nothing here)
    assert (f"track selector {tmp_path / 'random.pt'}: not a readable checkpoint (the file is corrupt, truncated or "
            "of another format); expected a file written by TrackSelector.save.") in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
