"""Builders of small synthetic events for the metric tests (no simulator: every number is hand-chosen)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from trackformers import Event


def build_event(pid_h: Sequence[int], *, eta_h: Sequence[float] | None = None,
                kin: dict[int, tuple[float, float]] | None = None, weight_h: Sequence[float] | None = None,
                event_id: int = 1, tz_h: Sequence[float] | None = None) -> Event:
    """An event with hit ids 1..N, particle ``pid_h[i]`` for hit i+1.

    ``eta_h``: η of each hit position (all hits at φ = 0, radii 30, 40, ... 10020 mm, repeating).
    ``kin``: particle id → (pT GeV, η) for the particles table (default 1 GeV, η 0).
    ``weight_h``: truth weights (default 0, so the metrics compute TrackML weights).
    """
    pid_h = np.asarray(pid_h, np.int64)
    n = len(pid_h)
    eta = np.zeros(n) if eta_h is None else np.asarray(eta_h, np.float64)
    r = 30.0 + 10.0 * (np.arange(n) % 1000)  # mm, inside the tracker
    z = r * np.sinh(eta) if tz_h is None else np.asarray(tz_h, np.float64)
    hits = pd.DataFrame({"hit_id": np.arange(1, n + 1, dtype=np.int64), "x": r.astype(np.float32),
                         "y": np.zeros(n, np.float32), "z": z.astype(np.float32),
                         "volume_id": np.full(n, 8, np.int64), "layer_id": np.full(n, 2, np.int64),
                         "module_id": np.arange(n, dtype=np.int64)})
    weights = np.zeros(n) if weight_h is None else np.asarray(weight_h, np.float64)
    truth = pd.DataFrame({"hit_id": hits.hit_id, "particle_id": pid_h, "tx": hits.x, "ty": hits.y,
                          "tz": hits.z,
                          "tpx": np.ones(n, np.float32), "tpy": np.zeros(n, np.float32),
                          "tpz": np.zeros(n, np.float32), "weight": weights.astype(np.float32)})
    pids = np.unique(pid_h[pid_h != 0])
    kin = kin or {}
    pt = np.array([kin.get(int(p), (1.0, 0.0))[0] for p in pids])
    peta = np.array([kin.get(int(p), (1.0, 0.0))[1] for p in pids])
    particles = pd.DataFrame({"particle_id": pids, "particle_type": np.full(len(pids), 13, np.int64),
                              "vx": np.zeros(len(pids), np.float32), "vy": np.zeros(len(pids), np.float32),
                              "vz": np.zeros(len(pids), np.float32), "px": pt.astype(np.float32),
                              "py": np.zeros(len(pids), np.float32),
                              "pz": (pt * np.sinh(peta)).astype(np.float32),
                              "q": np.ones(len(pids), np.int64),
                              "nhits": np.array([(pid_h == p).sum() for p in pids], np.int64)})
    return Event(event_id=event_id, hits=hits, truth=truth, particles=particles, source="test").validate()


def submission(track_h: Sequence[int], *, hit_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """``DataFrame[hit_id, track_id]`` for hits 1..N (or ``hit_ids``)."""
    track_h = np.asarray(track_h, np.int64)
    ids = np.arange(1, len(track_h) + 1, dtype=np.int64) if hit_ids is None else np.asarray(hit_ids, np.int64)
    return pd.DataFrame({"hit_id": ids, "track_id": track_h})


def perfect_submission(event: Event) -> pd.DataFrame:
    """Every particle one track; every noise hit its own track."""
    pid = event.truth["particle_id"].to_numpy(np.int64)
    noise = pid == 0
    track = pid.copy()
    track[noise] = -1 - np.arange(noise.sum())  # distinct ids that cannot collide with particle ids
    return pd.DataFrame({"hit_id": event.truth["hit_id"].to_numpy(np.int64), "track_id": track})


def random_event(rng: np.random.Generator, *, n_particles: int, max_hits: int, n_noise: int,
                 event_id: int = 1) -> Event:
    """Random particles (1..max_hits hits each, random pT/η), noise hits, shuffled hit order."""
    counts = rng.integers(1, max_hits + 1, n_particles)
    pids = np.arange(1, n_particles + 1) * 7919
    pid_h = np.concatenate([np.repeat(pids, counts), np.zeros(n_noise, np.int64)])
    pid_h = rng.permutation(pid_h)
    kin = {int(p) * 7919: (float(rng.uniform(0.01, 5.0)), float(rng.uniform(-5, 5)))
           for p in range(1, n_particles + 1)}
    return build_event(pid_h, eta_h=rng.uniform(-4, 4, len(pid_h)), kin=kin, event_id=event_id,
                       tz_h=rng.normal(0, 500, len(pid_h)))


# p1 4 hits (reco), p2 3 (reco), p3 2 (too few hits), p4 5 (pT 0.5), p5 3 (η 4.5), noise 4
PID = [1, 1, 1, 1, 2, 2, 0, 2, 4, 4, 4, 4, 4, 0, 3, 3, 5, 5, 5, 0, 0]
#      T1--------  T2------  T3 T4------ T5----- T6--- T7----- T8---
TRACK = [1, 1, 1, 1, 2, 2, 2, 3, 4, 4, 4, 5, 5, 5, 6, 6, 7, 7, 7, 8, 8]
ETA_H = [0.1] * 4 + [-1.0] * 4 + [2.0] * 6 + [0.5] * 2 + [4.5] * 3 + [1.0] * 2
KIN = {1: (1.0, 0.1), 2: (2.0, -1.0), 3: (1.0, 0.5), 4: (0.5, 2.0), 5: (1.0, 4.5)}


def hand_event() -> Event:
    """The hand-computed event of the rate tables (see tests/metrics/test_metrics_tables.py)."""
    return build_event(PID, eta_h=ETA_H, kin=KIN)
