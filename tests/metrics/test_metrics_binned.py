"""Binned efficiencies and rates (hand table), Clopper-Pearson intervals, summaries and the text table."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared event builders beside this file
from metric_events import TRACK, hand_event, submission  # noqa: E402

from trackformers.metrics import (
    binned_efficiency,
    binned_rates,
    clopper_pearson,
    evaluate_event,
    format_table,
    match_event,
    summarize,
    to_json,
)


def test_efficiency_vs_pt_hand_table():
    # reconstructable without the pT cut: p4 (0.5 GeV, DM), p1 (1 GeV, DM + perfect), p2 (2 GeV, DM)
    df = binned_efficiency(var="pt", bins=[0, 0.9, 1.5, 3], events=[hand_event()],
                           submissions=[submission(TRACK)])
    assert df["lo"].tolist() == [0, 0.9, 1.5] and df["hi"].tolist() == [0.9, 1.5, 3]
    assert df["dm_efficiency_total"].tolist() == [1, 1, 1]
    assert df["dm_efficiency"].tolist() == [1.0, 1.0, 1.0]
    assert df["perfect_efficiency"].tolist() == [0.0, 1.0, 0.0]


def test_efficiency_vs_eta_hand_table():
    # without the η cut p5 (η 4.5, perfect) joins p1 (η 0.1, perfect) and p2 (η −1, DM only)
    match = match_event(event=hand_event(), submission=submission(TRACK))
    df = binned_efficiency(var="eta", bins=[-5, 0, 5], matches=[match])
    assert df["dm_efficiency_total"].tolist() == [1, 2]
    assert df["dm_efficiency_pass"].tolist() == [1, 2]
    assert df["perfect_efficiency_pass"].tolist() == [0, 2]


def test_rates_vs_eta_hand_table():
    match = match_event(event=hand_event(), submission=submission(TRACK))
    df = binned_rates(bins=[-5, 0, 5], matches=[match, match])  # two identical events pool their counts
    assert df["fake_rate_total"].tolist() == [2, 8] and df["fake_rate_pass"].tolist() == [0, 2]
    assert df["fake_rate"].tolist() == [0.0, 0.25]
    assert df["duplicate_rate_total"].tolist() == [2, 6] and df["duplicate_rate_pass"].tolist() == [0, 2]
    assert df["duplicate_rate"].iloc[1] == pytest.approx(1 / 3)


def test_empty_bins_are_nan_and_outside_values_dropped():
    match = match_event(event=hand_event(), submission=submission(TRACK))
    df = binned_efficiency(var="pt", bins=[10, 20, 30], matches=[match])
    assert df["dm_efficiency_total"].tolist() == [0, 0]
    assert df["dm_efficiency"].isna().all() and df["dm_efficiency_lo"].isna().all()
    assert len(binned_rates(matches=[])) == 16


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 10), (3, 10), (10, 10), (1, 2), (57, 113)])
def test_clopper_pearson_matches_scipy_exact_interval(k, n):
    lo, hi = clopper_pearson(np.array([k]), np.array([n]))
    ref = binomtest(k, n).proportion_ci(confidence_level=0.682689492137, method="exact")
    assert lo[0] == pytest.approx(ref.low, abs=1e-9) and hi[0] == pytest.approx(ref.high, abs=1e-9)
    alpha = 1 - 0.682689492137
    if k == 0:
        assert lo[0] == 0 and hi[0] == pytest.approx(1 - (alpha / 2) ** (1 / n))
    if k == n:
        assert hi[0] == 1 and lo[0] == pytest.approx((alpha / 2) ** (1 / n))


def test_summarize_means_over_events_and_pools():
    a = evaluate_event(event=hand_event(), submission=submission(TRACK))  # dm 1.0, fake 0.2, dup 0.25
    b = dict(a, event_id=2, dm_efficiency=float("nan"), n_reconstructable=0, n_dm_matched=0, fake_rate=0.6,
             n_tracks_min_hits=5, n_fake=3, duplicate_rate=0.75, n_purity_matched=4, n_duplicated=3)
    s = summarize([a, b], config={"pt_min": 0.9})
    assert s["dm_efficiency"] == 1.0 and s["n_events_with"]["dm_efficiency"] == 1
    assert s["fake_rate"] == pytest.approx(0.4) and s["duplicate_rate"] == pytest.approx(0.5)
    assert s["pooled"]["fake_rate"] == pytest.approx(4 / 10) and s["pooled"]["n_fake"] == 4
    assert s["pooled"]["duplicate_rate"] == pytest.approx(4 / 8)
    assert s["n_events"] == 2 and [e["event_id"] for e in s["per_event"]] == [1, 2]
    text = format_table(s)
    assert "mean over 2 events" in text and "fake_rate" in text and "0.4000" in text and "(1 event)" in text
    assert "pt_min=0.9" in text
    data = json.loads(to_json(s))
    assert data["per_event"][1]["dm_efficiency"] is None
    assert {"trackml_score", "dm_efficiency", "perfect_efficiency", "fake_rate", "duplicate_rate",
            "per_event"} <= set(data)


def test_summarize_no_events():
    s = summarize([])
    assert s["n_events"] == 0 and math.isnan(s["trackml_score"]) and s["per_event"] == []
    assert "n/a" in format_table(s)
