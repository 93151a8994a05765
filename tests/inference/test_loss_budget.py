"""benchmarks/loss_budget.py: the stage a lost particle is charged to, and the staged pipeline against the real one."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch
from bench_scripts import benchmark_script

from trackformers.clustering.selection import TrackSelector
from trackformers.filtering import HitFilter
from trackformers.inference import CHECKPOINT_DIR, StageTimer, load_module, reconstruct_event
from trackformers.metrics import evaluate_event
from trackformers.metrics.matching import match_event
from trackformers.metrics.rates import reconstructable
from trackformers.simulation import simulate


def script() -> ModuleType:
    return benchmark_script("loss_budget")


def test_charge_takes_the_first_stage_that_lost_the_particle() -> None:
    t, f = True, False
    #            kept nhits raw clean final  → stage
    cases = [(4, 4, t, t, t, "found"),
             (0, 4, f, f, f, "filter: none kept"),
             (2, 4, f, f, f, "filter: some kept"),      # exactly half kept: no track can hold more than half
             (3, 4, f, f, f, "tracker"),
             (3, 4, t, f, f, "cleaning"),
             (3, 4, t, t, f, "selection"),
             (3, 4, f, t, f, "selection"),              # cleaning made the match, the selector undid it
             (3, 4, f, t, t, "found")]
    cols = [np.array(c) for c in zip(*cases)]
    got = script().charge(*cols[:5])
    assert list(got) == list(cols[5])


def test_staged_pipeline_finds_what_reconstruct_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget's "found" particles are exactly those `reconstruct --filter --clean --selector` finds, and
    every reconstructable particle is charged to one stage."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # the banded torch path: the interpreter would take many minutes
    event = next(iter(simulate(1, seed=11, pileup=10, volumes=(7, 8, 9))))
    cpu = torch.device("cpu")
    hit_filter = HitFilter.load(CHECKPOINT_DIR / "filter.ckpt", cpu)
    tracker = load_module(CHECKPOINT_DIR / "tracker_mu200.ckpt", cpu)
    selector = TrackSelector.load(CHECKPOINT_DIR / "selector_mu200.pt")
    table = script().event_budget(event, hit_filter, tracker, selector).set_index("particle_id")
    assert set(table["stage"]) <= set(script().STAGES) and len(table) > 30
    # each stage's matches against the real pipeline cut at that stage, particle by particle
    for column, options in (("raw", {}), ("clean", {"clean": {}}), ("found", {"clean": {}, "selector": selector})):
        sub = reconstruct_event(tracker, event, None, StageTimer(), hit_filter=hit_filter, **options)
        parts = match_event(event=event, submission=sub).particles
        parts = parts[reconstructable(parts)].set_index("particle_id")
        assert sorted(parts.index) == sorted(table.index)
        got = table["stage"] == "found" if column == "found" else table[column]
        assert (got.to_numpy(bool) == parts.loc[table.index, "dm_matched"].to_numpy(bool)).all(), column
    metrics = evaluate_event(event=event, submission=sub)  # the final fake-rate counts: the real pipeline's
    assert (table.attrs["fake"], table.attrs["tracks"]) == (metrics["n_fake"], metrics["n_tracks_min_hits"])
    assert table.attrs["tracks"] > table.attrs["fake"] > 0
    # kept: the particle's hits among those the filter keeps
    pid = event.truth.set_index("hit_id").loc[event.hits["hit_id"], "particle_id"].to_numpy()
    kept = pd.Series(pid[hit_filter.keep(event)]).value_counts()
    assert (table["kept"] == kept.reindex(table.index, fill_value=0)).all()
    assert (table["kept"] <= table["nhits"]).all() and (table["kept"] > 0).any()


def test_no_events_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(tmp_path), "--filter", str(CHECKPOINT_DIR / "filter.ckpt"),
            "--tracker", str(CHECKPOINT_DIR / "tracker_mu200.ckpt"),
            "--selector", str(CHECKPOINT_DIR / "selector_mu200.pt")]
    assert script().main(args) == 2
    err = capsys.readouterr().err
    assert "no TrackML events" in err and len(err.strip().splitlines()) == 1
