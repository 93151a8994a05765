"""Small random events for the I/O tests (TrackML columns and dtypes, prime sizes, noise hits)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackformers.events import Event, conform

VOLUMES = (7, 8, 9, 12, 13, 14, 16, 17, 18)


def random_event(event_id: int, n_hits: int, *, n_particles: int = 7, seed: int = 0, truth: bool = True,
                 particles: bool = True) -> Event:
    """A valid event of ``n_hits`` hits; particle ids use every barcode field (incl. large ones)."""
    rng = np.random.default_rng([seed, event_id, n_hits])
    pid = (rng.integers(1, 2047, n_particles) << 52) | (rng.integers(0, 4095, n_particles) << 40) \
        | (rng.integers(0, 65535, n_particles) << 24) | rng.integers(0, 2**16, n_particles)
    pid = np.unique(pid.astype(np.int64))
    hit_pid = np.where(rng.random(n_hits) < 0.1, 0, rng.choice(pid, n_hits)) if len(pid) else np.zeros(n_hits)
    vol = rng.choice(VOLUMES, n_hits)
    hits = pd.DataFrame({
        "hit_id": rng.permutation(np.arange(1, n_hits + 1)) * 3,
        "x": rng.normal(0, 300, n_hits), "y": rng.normal(0, 300, n_hits), "z": rng.normal(0, 1000, n_hits),
        "volume_id": vol, "layer_id": rng.integers(1, 7, n_hits) * 2,
        "module_id": rng.integers(1, 3000, n_hits),
    })
    tru = pd.DataFrame({
        "hit_id": hits["hit_id"], "particle_id": hit_pid.astype(np.int64),
        "tx": hits["x"] + 0.01, "ty": hits["y"] - 0.01, "tz": hits["z"],
        "tpx": rng.normal(0, 1, n_hits), "tpy": rng.normal(0, 1, n_hits), "tpz": rng.normal(0, 2, n_hits),
        "weight": rng.random(n_hits) / max(n_hits, 1),
    })
    counts = pd.Series(hit_pid).value_counts()
    parts = pd.DataFrame({
        "particle_id": pid, "particle_type": rng.choice([11, -11, 13, 211, -211, 2212], len(pid)),
        "vx": rng.normal(0, 0.01, len(pid)), "vy": rng.normal(0, 0.01, len(pid)),
        "vz": rng.normal(0, 50, len(pid)), "px": rng.normal(0, 1, len(pid)), "py": rng.normal(0, 1, len(pid)),
        "pz": rng.normal(0, 2, len(pid)), "q": rng.choice([-1, 1], len(pid)),
        "nhits": pd.Series(pid).map(counts).fillna(0).to_numpy(),
    })
    return Event(event_id, conform(hits), conform(tru) if truth else None,
                 conform(parts) if particles else None).validate()


def assert_events_equal(a: Event, b: Event) -> None:
    """Same id and identical tables (row order and dtypes included)."""
    assert a.event_id == b.event_id
    for name in ("hits", "truth", "particles"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            pd.testing.assert_frame_equal(x.reset_index(drop=True), y.reset_index(drop=True))
