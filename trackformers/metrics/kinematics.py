"""Particle and track kinematics used by the metrics: pT (GeV), η, vertex z (mm).

η = −ln tan(θ/2) = asinh(pz / pT) for momenta and asinh(z / r) for positions; pT = 0 with pz = 0 gives NaN
(never reconstructable).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def eta_of(pt: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """Pseudorapidity from transverse and longitudinal components (momenta or positions), same shape."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.arcsinh(np.asarray(pz, np.float64) / np.asarray(pt, np.float64))


def particle_table(*, truth: pd.DataFrame | None, particles: pd.DataFrame | None) -> pd.DataFrame:
    """DataFrame indexed by ``particle_id`` with float64 columns ``pt`` (GeV), ``eta``, ``vz`` (mm).

    From the particles table (px, py, pz, vz) when given; otherwise an approximation from the truth table:
    the mean true momentum over the particle's hits and vz = 0 (the TrackML truth carries no vertex).
    """
    if particles is not None:
        px, py, pz = (particles[c].to_numpy(np.float64) for c in ("px", "py", "pz"))
        pt = np.hypot(px, py)
        table = pd.DataFrame({"pt": pt, "eta": eta_of(pt, pz), "vz": particles["vz"].to_numpy(np.float64)},
                             index=pd.Index(particles["particle_id"].to_numpy(np.int64), name="particle_id"))
        return table
    if truth is None or not len(truth):
        empty = pd.Index([], dtype=np.int64, name="particle_id")
        return pd.DataFrame({"pt": [], "eta": [], "vz": []}, index=empty)
    uniq, idx = np.unique(truth["particle_id"].to_numpy(np.int64), return_inverse=True)
    n = np.bincount(idx)
    mean = {c: np.bincount(idx, weights=truth[c].to_numpy(np.float64)) / n for c in ("tpx", "tpy", "tpz")}
    pt = np.hypot(mean["tpx"], mean["tpy"])
    return pd.DataFrame({"pt": pt, "eta": eta_of(pt, mean["tpz"]), "vz": np.zeros(len(uniq))},
                        index=pd.Index(uniq, name="particle_id"))


def group_eta(group: np.ndarray, n_groups: int, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """η of the mean hit position of each group (e.g. a track), shape ``(n_groups,)``; positions in mm."""
    n = np.bincount(group, minlength=n_groups).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mx, my, mz = (np.bincount(group, weights=v, minlength=n_groups) / n for v in (x, y, z))
    return eta_of(np.hypot(mx, my), mz)
