"""Hand-computed tables for the TrackML score and every rate (ties, noise, short tracks, empty events)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared event builders beside this file
from metric_events import TRACK, build_event, hand_event, perfect_submission, random_event, submission  # noqa: E402

from trackformers import InputError
from trackformers.metrics import evaluate_event, hit_weights, match_event, score_event


def test_score_hand_table():
    # hits 1..10: p1 x4 (0.1 each), p2 x3 (0.15 each), p3 x2 (0.075 each), noise x1 (0)
    pid = [1, 1, 1, 1, 2, 2, 2, 3, 3, 0]
    w = [0.1] * 4 + [0.15] * 3 + [0.075] * 2 + [0.0]
    event = build_event(pid, weight_h=w)
    # A = hits 1-3 (p1 3/3, 3/4: good, 0.3); B = hits 4-6 (p2 2/3, 2/3: good, 0.3);
    # C = hits 7-8 (p2 vs p3 tie → p2, 1/2 not > 0.5); D = hits 9-10 (p3 vs noise tie → noise, 1/2)
    sub = submission([10, 10, 10, 20, 20, 20, 30, 30, 40, 40])
    assert score_event(truth=event.truth, submission=sub) == pytest.approx(0.6)
    m = match_event(event=event, submission=sub)
    assert m.tracks["majority_particle_id"].tolist() == [1, 2, 2, 0]
    assert m.tracks["majority_nhits"].tolist() == [3, 2, 1, 1]


def test_score_both_fractions_strict():
    event = build_event([1, 1, 2, 2], weight_h=[0.25] * 4)
    # 2 of p1's 2 hits in a track of 4: n_maj/n_track = 0.5 → not good; n/n_p = 1
    assert score_event(truth=event.truth, submission=submission([1, 1, 1, 1])) == 0.0
    # track of 1 hit of a 2-hit particle: purity 1 but 1/2 of the particle → not good
    assert score_event(truth=event.truth, submission=submission([1, 2, 3, 4])) == 0.0
    assert score_event(truth=event.truth, submission=submission([5, 5, 7, 7])) == pytest.approx(1.0)


def test_noise_can_be_majority_in_score():
    # the challenge lets noise be a track's majority; with non-zero noise weights it then scores
    event = build_event([0, 0, 0, 1, 1], weight_h=[0.1, 0.1, 0.1, 0.35, 0.35])
    assert score_event(truth=event.truth, submission=submission([1, 1, 1, 2, 2])) == pytest.approx(1.0)
    event = build_event([0, 0, 0, 1, 1, 1, 1])  # TrackML weights: noise weighs 0
    w = hit_weights(truth=event.truth, particles=event.particles)
    sub = submission([1, 1, 1, 2, 2, 2, 2])
    assert score_event(truth=event.truth, submission=sub, weights=w) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("cuts", "expected"),
    [
        # T1 perfect p1; T2 DM p2; T3 1 hit; T4 DM p4; T5 purity-only p4 (fake); T6 2 hits; T7 DM p5; T8 noise
        ({}, dict(n_reconstructable=2, n_dm_matched=2, n_perfect=1, dm_efficiency=1.0, perfect_efficiency=0.5,
                  n_tracks_min_hits=5, n_fake=1, fake_rate=0.2, n_purity_matched=4, n_duplicated=1,
                  duplicate_rate=0.25, n_tracks=8, n_particles=5, n_hits=21)),
        ({"pt_min": 0.4}, dict(n_reconstructable=3, n_dm_matched=3, n_perfect=1, perfect_efficiency=1 / 3)),
        ({"eta_max": 5.0}, dict(n_reconstructable=3, n_dm_matched=3, n_perfect=2, perfect_efficiency=2 / 3)),
        ({"min_hits": 2}, dict(n_reconstructable=3, n_dm_matched=3, n_perfect=2, n_tracks_min_hits=7,
                               n_fake=2, fake_rate=2 / 7, n_purity_matched=5, n_duplicated=1,
                               duplicate_rate=0.2)),
        ({"min_hits": 4}, dict(n_reconstructable=1, n_dm_matched=1, n_tracks_min_hits=1, n_fake=0,
                               n_purity_matched=1, n_duplicated=0, duplicate_rate=0.0)),
    ],
)
def test_rates_hand_table(cuts, expected):
    result = evaluate_event(event=hand_event(), submission=submission(TRACK), **cuts)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value), key
    assert set(expected) <= set(result)


def test_score_in_evaluate_matches_score_event():
    event = hand_event()
    w = hit_weights(truth=event.truth, particles=event.particles)
    result = evaluate_event(event=event, submission=submission(TRACK))
    expected = score_event(truth=event.truth, submission=submission(TRACK), weights=w)
    assert result["trackml_score"] == pytest.approx(expected)
    assert 0 < result["trackml_score"] < 1


def test_all_noise_event():
    event = build_event([0] * 6)
    r = evaluate_event(event=event, submission=submission([1, 1, 1, 2, 2, 3]))
    assert math.isnan(r["trackml_score"]) and math.isnan(r["dm_efficiency"])
    assert math.isnan(r["perfect_efficiency"]) and math.isnan(r["duplicate_rate"])
    assert r["fake_rate"] == 1.0 and r["n_tracks_min_hits"] == 1 and r["n_particles"] == 0


def test_empty_event():
    event = build_event([])
    r = evaluate_event(event=event, submission=submission([]))
    assert all(math.isnan(r[k]) for k in ("trackml_score", "dm_efficiency", "perfect_efficiency",
                                          "fake_rate", "duplicate_rate"))
    assert r["n_hits"] == r["n_tracks"] == r["n_particles"] == 0
    assert hit_weights(truth=event.truth, particles=event.particles).shape == (0,)


def test_two_hit_tracks_never_count():
    event = build_event([1, 1, 1, 1, 2, 2], kin={1: (2.0, 0.0), 2: (2.0, 0.0)})
    r = evaluate_event(event=event, submission=submission([1, 1, 2, 2, 3, 3]))
    # p1 split 2+2: neither track holds > 50 % of p1; tracks of 2 hits are neither fakes nor matches
    assert r["n_tracks_min_hits"] == 0 and math.isnan(r["fake_rate"])
    assert r["n_reconstructable"] == 1 and r["dm_efficiency"] == 0.0


def test_perfect_submission_scores_one():
    event = random_event(np.random.default_rng(1), n_particles=40, max_hits=12, n_noise=30)
    r = evaluate_event(event=event, submission=perfect_submission(event))
    assert r["trackml_score"] == pytest.approx(1.0)
    assert r["dm_efficiency"] == 1.0 and r["perfect_efficiency"] == 1.0
    assert r["fake_rate"] == 0.0 and r["duplicate_rate"] == 0.0


def test_random_assignment_is_low():
    rng = np.random.default_rng(2)
    event = random_event(rng, n_particles=200, max_hits=12, n_noise=100)
    sub = perfect_submission(event)
    sub["track_id"] = rng.integers(0, 200, len(sub))
    r = evaluate_event(event=event, submission=sub, pt_min=0.0)
    assert r["trackml_score"] < 0.05 and r["dm_efficiency"] < 0.05 and r["fake_rate"] > 0.9


def test_bad_submissions_name_the_hit():
    event = hand_event()
    sub = submission(TRACK)
    with pytest.raises(InputError, match="hit_id 3 is assigned twice"):
        evaluate_event(event=event, submission=pd.concat([sub, sub.iloc[[2]]]))
    with pytest.raises(InputError, match="hit_id 1 has no track"):
        evaluate_event(event=event, submission=sub.iloc[1:])
    with pytest.raises(InputError, match="hit_id 5 has no track"):
        score_event(truth=event.truth, submission=sub.drop(index=4))
    event.truth = None
    with pytest.raises(InputError, match="no truth table"):
        evaluate_event(event=event, submission=sub)


@pytest.mark.parametrize(
    ("pid", "track", "expected"),
    [
        # a 4-hit track of 2 of p1's 3 hits and 2 of p2's 4: no DM match (0.5 is not > 0.5), so a fake
        ([1, 1, 1, 2, 2, 2, 2], [1, 2, 2, 2, 2, 3, 3],
         dict(dm_efficiency=0.0, fake_rate=1.0, n_purity_matched=0, duplicate_rate=math.nan)),
        # p1 split 3 + 3: each track is pure but holds only half of p1 → two fakes, p1 duplicated
        ([1] * 6 + [2] * 3, [1, 1, 1, 2, 2, 2, 3, 3, 3],
         dict(dm_efficiency=0.5, perfect_efficiency=0.5, fake_rate=2 / 3, n_duplicated=1,
              duplicate_rate=0.5)),
    ],
)
def test_dm_fractions_are_strict(pid, track, expected):
    r = evaluate_event(event=build_event(pid), submission=submission(track))
    for key, value in expected.items():
        assert r[key] == pytest.approx(value, nan_ok=True), key
