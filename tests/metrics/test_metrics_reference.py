"""Vectorised metrics against plain-Python references (the challenge's loop algorithms) + properties."""

from __future__ import annotations

import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared event builders beside this file
from metric_events import build_event, perfect_submission, random_event, submission  # noqa: E402

from trackformers.metrics import evaluate_event, hit_weights, score_event
from trackformers.metrics.reference import reference_score
from trackformers.metrics.weights import ORDER_MATRIX, hit_order, weight_pt


def reference_rates(pid_h, track_h, reco, min_hits=3) -> dict:
    """DM / perfect efficiency, fake and duplicate counts by plain loops over tracks."""
    n_p = Counter(pid_h)
    tracks = defaultdict(list)
    for p, t in zip(pid_h, track_h):
        tracks[t].append(p)
    dm, perfect, n_long, n_fake, purity = set(), set(), 0, 0, Counter()
    for hits in tracks.values():
        counts = Counter(hits)
        maj = min(counts, key=lambda p: (-counts[p], p))
        n_long += len(hits) >= min_hits
        is_dm = maj != 0 and 2 * counts[maj] > len(hits) and 2 * counts[maj] > n_p[maj]
        if len(hits) >= min_hits:
            n_fake += not is_dm
            if is_dm:
                dm.add(maj)
            if maj != 0 and counts[maj] == len(hits) == n_p[maj]:
                perfect.add(maj)
            if maj != 0 and 2 * counts[maj] > len(hits):
                purity[maj] += 1
    return {"n_reconstructable": len(reco), "n_dm_matched": len(dm & reco), "n_perfect": len(perfect & reco),
            "n_tracks_min_hits": n_long, "n_fake": n_fake, "n_purity_matched": len(purity),
            "n_duplicated": sum(v > 1 for v in purity.values())}


def reference_weights(truth: pd.DataFrame, particles: pd.DataFrame) -> np.ndarray:
    """The challenge's weight_hits_phase1 in pandas, with the hit count taken from the truth rows."""
    sel = pd.DataFrame({"particle_id": particles.particle_id, "vz": particles.vz,
                        "w_pt": weight_pt(np.hypot(particles.px, particles.py))})
    c = truth.merge(sel, on="particle_id", how="left")
    c["w_pt"] = c["w_pt"].fillna(0.0)
    c["dz"] = (c.tz - c.vz).abs()
    c["ihit"] = (c.groupby("particle_id")["dz"].rank() - 1).fillna(0).astype(int)
    c["n"] = c.groupby("particle_id")["dz"].transform("size")

    def order(row) -> float:
        n = min(int(row.n), 20)
        return 0.0 if row.ihit >= 20 or row.particle_id == 0 else ORDER_MATRIX[n, int(row.ihit)]

    if not len(c):
        return np.zeros(0)
    w = (c.w_pt * c.apply(order, axis=1)).to_numpy()
    return w / w.sum() if w.sum() > 0 else w


@st.composite
def event_and_tracks(draw):
    n_particles = draw(st.integers(0, 8))
    hits = draw(st.lists(st.integers(1, 9), min_size=n_particles, max_size=n_particles))
    n_noise = draw(st.integers(0, 5))
    pid = [p + 1 for p, n in enumerate(hits) for _ in range(n)] + [0] * n_noise
    pid = draw(st.permutations(pid))
    track = draw(st.lists(st.integers(0, 6), min_size=len(pid), max_size=len(pid)))
    pts, etas = st.sampled_from([0.02, 0.3, 0.95, 1.5, 4.0]), st.sampled_from([-4.5, -1.0, 0.0, 3.9])
    kin = {p + 1: (draw(pts), draw(etas)) for p in range(n_particles)}
    tz = draw(st.lists(st.sampled_from([-300.0, -10.0, 5.0, 5.0, 80.0, 700.0]), min_size=len(pid),
                       max_size=len(pid)))
    return build_event(pid, kin=kin, tz_h=tz), track


@settings(max_examples=80, deadline=None)
@given(event_and_tracks())
def test_against_references(case):
    event, track = case
    pid = event.truth["particle_id"].tolist()
    w = hit_weights(truth=event.truth, particles=event.particles)
    np.testing.assert_allclose(w, reference_weights(event.truth, event.particles), atol=1e-12)
    fast = score_event(truth=event.truth, submission=submission(track), weights=w)
    ref = reference_score(pid, track, w)
    assert (math.isnan(fast) and math.isnan(ref)) or fast == pytest.approx(ref, abs=1e-12)
    r = evaluate_event(event=event, submission=submission(track))
    assert (math.isnan(r["trackml_score"]) and math.isnan(ref)) or r["trackml_score"] == pytest.approx(ref)
    kin = event.particles.set_index("particle_id").astype("float64")
    pt = np.hypot(kin.px, kin.py)
    eta = np.arcsinh(kin.pz / pt)
    n_p = Counter(pid)
    reco = {p for p in kin.index if n_p[p] >= 3 and pt[p] >= 0.9 and abs(eta[p]) < 4.0}
    expected = reference_rates(pid, track, reco)
    assert {k: r[k] for k in expected} == expected


@settings(max_examples=60, deadline=None)
@given(event_and_tracks(), st.randoms(use_true_random=False))
def test_relabelling_and_reordering_tracks_changes_nothing(case, rnd):
    event, track = case
    base = evaluate_event(event=event, submission=submission(track))
    labels = sorted(set(track))
    new = dict(zip(labels, rnd.sample(range(-50, 10_000), len(labels))))
    sub = submission([new[t] for t in track]).sample(frac=1.0, random_state=rnd.randrange(1000))
    again = evaluate_event(event=event, submission=sub)
    assert again.keys() == base.keys()
    for key, value in base.items():
        assert again[key] == pytest.approx(value, nan_ok=True), key


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 30), st.integers(0, 20))
def test_perfect_submission_always_scores_one(seed, n_particles, n_noise):
    event = random_event(np.random.default_rng(seed), n_particles=n_particles, max_hits=14, n_noise=n_noise)
    r = evaluate_event(event=event, submission=perfect_submission(event), pt_min=0.0, eta_max=10.0)
    assert math.isnan(r["trackml_score"]) or r["trackml_score"] == pytest.approx(1.0)
    assert r["fake_rate"] in (0.0,) or math.isnan(r["fake_rate"])
    assert r["perfect_efficiency"] in (1.0,) or r["n_reconstructable"] == 0
    assert r["dm_efficiency"] in (1.0,) or r["n_reconstructable"] == 0


def test_order_weights_hand_values():
    # 4 hits: the proposal sampled at supports 0, 3/8, ..., 3 → 10, 16/3, 3, 6 (÷ their sum)
    row = np.array([10.0, 16.0 / 3.0, 3.0, 6.0])
    np.testing.assert_allclose(ORDER_MATRIX[4, :4], row / row.sum())
    assert ORDER_MATRIX[3].sum() == 0 and ORDER_MATRIX[20].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weight_pt(np.array([0.04, 0.05, 0.5, 1.75, 3.0, 50.0])),
                               [0.0, 0.2, 0.2, 0.6, 1.0, 1.0])
    # particle 1 (pT 4 GeV, 4 hits at |tz| 40, 10, 30, 20 mm), 3-hit particle 2 and noise weigh 0
    event = build_event([1, 1, 1, 1, 2, 2, 2, 0], kin={1: (4.0, 0.0), 2: (4.0, 0.0)},
                        tz_h=[40.0, -10.0, 30.0, 20.0, 1.0, 2.0, 3.0, 4.0])
    w = hit_weights(truth=event.truth, particles=event.particles)
    np.testing.assert_allclose(w, np.r_[row[[3, 0, 2, 1]] / row.sum(), 0, 0, 0, 0])


def test_hit_order_ties_use_truncated_average_rank():
    group = np.array([0, 0, 0, 1, 1, 0])
    key = np.array([5.0, 1.0, 5.0, 2.0, 2.0, 7.0])
    # group 0 sorted: 1.0 (0), 5.0, 5.0 (ranks 1, 2 → average 1.5 → 1), 7.0 (3); group 1: tie of 2 → 0
    np.testing.assert_array_equal(hit_order(group, key), [1, 0, 1, 0, 0, 3])


def test_large_event_is_fast_enough_to_run_in_ci():
    # 100k hits: vectorised code paths only (this checks shapes and sums, not time)
    event = random_event(np.random.default_rng(5), n_particles=8000, max_hits=20, n_noise=10000)
    r = evaluate_event(event=event, submission=perfect_submission(event))
    assert r["n_hits"] == len(event.hits) > 90_000 and r["trackml_score"] == pytest.approx(1.0)


def test_long_particles_match_reference_weights():
    # particles of up to 30 hits: the 20-hit row is used and hits after the 20th weigh 0
    event = random_event(np.random.default_rng(11), n_particles=25, max_hits=30, n_noise=10)
    w = hit_weights(truth=event.truth, particles=event.particles)
    np.testing.assert_allclose(w, reference_weights(event.truth, event.particles), atol=1e-12)
    n = event.truth.groupby("particle_id")["hit_id"].transform("size").to_numpy()
    assert (n > 20).any() and (w[(n > 20)] == 0).sum() >= (n[n > 20] - 20).min()


def test_binned_totals_agree_with_event_counts():
    from trackformers.metrics import binned_efficiency, binned_rates, match_event

    rng = np.random.default_rng(3)
    events = [random_event(rng, n_particles=60, max_hits=12, n_noise=20, event_id=i) for i in range(3)]
    subs = []
    for e in events:
        s = perfect_submission(e)
        split = (e.truth["particle_id"].to_numpy() % 3 == 0) & (rng.random(len(s)) < 0.5)  # duplicates
        s["track_id"] = np.where(split, s["track_id"] + 10**9, s["track_id"])
        s["track_id"] = np.where(rng.random(len(s)) < 0.2, rng.integers(0, 80, len(s)), s["track_id"])
        subs.append(s)
    matches = [match_event(event=e, submission=s) for e, s in zip(events, subs)]
    per = [evaluate_event(event=e, submission=s, pt_min=0.0, eta_max=np.inf) for e, s in zip(events, subs)]
    eff = binned_efficiency(var="pt", bins=[0.0, np.inf], matches=matches, pt_min=0.0, eta_max=np.inf)
    assert eff["dm_efficiency_total"].item() == sum(r["n_reconstructable"] for r in per)
    assert eff["dm_efficiency_pass"].item() == sum(r["n_dm_matched"] for r in per)
    assert eff["perfect_efficiency_pass"].item() == sum(r["n_perfect"] for r in per)
    rates = binned_rates(bins=[-np.inf, np.inf], matches=matches)
    assert rates["fake_rate_total"].item() == sum(r["n_tracks_min_hits"] for r in per)
    assert rates["fake_rate_pass"].item() == sum(r["n_fake"] for r in per)
    assert rates["duplicate_rate_pass"].item() == sum(r["n_duplicated"] for r in per) > 0
