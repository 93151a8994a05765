"""Primary particles of an event: pile-up vertices, multiplicities, spectra, species and TrackML ids.

Units: mm, GeV. An event holds ``1 + Poisson(pileup)`` interactions (so ``pileup=0`` gives exactly one and
events are never empty): the first is the hard scatter when ``hard_scatter`` is set (or a particle gun in
gun mode), the others are minimum-bias interactions with ``Poisson(multiplicity)`` charged particles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from trackformers.errors import InputError

#: (PDG id of the positive particle, mass GeV, fraction) of the charged species.
SPECIES: tuple[tuple[int, float, float], ...] = ((211, 0.13957, 0.80), (321, 0.49368, 0.12),
                                                 (2212, 0.93827, 0.08))
#: TrackML particle_id fields (shift, bits): vertex 12 bits << 52, primary 16 bits << 36,
#: generation 12 << 24, secondary 12 << 12, process 12 << 0 (generation/secondary/process 0 for primaries).
VERTEX_SHIFT, PRIMARY_SHIFT = 52, 36
MAX_VERTICES, MAX_PRIMARIES = (1 << 12) - 1, (1 << 16) - 1


@dataclass(frozen=True)
class Spectrum:
    """dN/dpT ∝ pT · (1 + pT / p0)^(-power) above ``pt_min`` (GeV), sampled by inverse CDF."""

    p0: float = 1.2
    power: float = 7.3
    pt_min: float = 0.1
    pt_max: float = 100.0

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        grid, cdf = _cdf(self)
        return np.interp(rng.random(n), cdf, grid)


@lru_cache(maxsize=16)
def _cdf(spec: Spectrum) -> tuple[np.ndarray, np.ndarray]:
    grid = np.geomspace(spec.pt_min, spec.pt_max, 4097)
    pdf = grid * (1 + grid / spec.p0) ** (-spec.power)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    return grid, cdf / cdf[-1]


MINIMUM_BIAS = Spectrum()
#: A harder, ttbar-like proxy for the hard-scatter vertex (more particles, longer pT tail).
HARD_SCATTER = Spectrum(p0=3.0, power=5.5, pt_min=0.1, pt_max=500.0)


def check_pileup(pileup: float) -> float:
    """Validate μ: finite, >= 0 and small enough for the 12-bit vertex field of the particle ids."""
    mu = float(pileup)
    if not np.isfinite(mu) or mu < 0:
        raise InputError(f"pile-up μ = {pileup}; expected a finite number >= 0.")
    if mu > 1500:
        # Poisson(1500) stays far below 2047 vertices, so bit 63 of particle_id is never set (ids stay > 0).
        raise InputError(f"pile-up μ = {pileup}; expected at most 1500 (the particle id's vertex field).")
    return mu


#: Transverse and longitudinal σ of the Gaussian beam spot, mm.
BEAM_SIGMA_XY = 0.0125
BEAM_SIGMA_Z = 55.5


def generate(rng: np.random.Generator, *, pileup: float = 0.0, multiplicity: float = 45.0,
             eta_max: float = 3.0, hard_scatter: bool = False, hard_multiplicity: float = 120.0,
             gun: int = 0, gun_pt: tuple[float, float] = (1.0, 10.0), spectrum: Spectrum = MINIMUM_BIAS,
             vertex_sigma: tuple[float, float] = (BEAM_SIGMA_XY, BEAM_SIGMA_Z)) -> dict[str, np.ndarray]:
    """Draw the primary particles of one event.

    Args:
        rng: the event's generator.
        pileup: μ of the Poisson number of extra interactions.
        multiplicity: mean charged particles per minimum-bias interaction (Poisson).
        eta_max: particles uniform in |η| < eta_max (at most 4).
        hard_scatter: make the first interaction a harder one (``hard_multiplicity``, :data:`HARD_SCATTER`).
        gun: if > 0, the first interaction is a particle gun of exactly ``gun`` particles with pT uniform in
            ``gun_pt`` (GeV) at the beam-spot vertex.
        spectrum: pT spectrum of minimum-bias particles.
        vertex_sigma: Gaussian beam spot (transverse, longitudinal) σ in mm.

    Returns:
        ``(P,)`` arrays ``particle_id`` (int64, TrackML layout), ``particle_type`` (PDG), ``q``, ``mass``,
        ``vx, vy, vz`` (mm), ``px, py, pz`` (GeV).
    """
    check_pileup(pileup)
    if not 0 < eta_max <= 4:
        raise InputError(f"eta_max = {eta_max}; expected 0 < eta_max <= 4.")
    if gun < 0 or gun > MAX_PRIMARIES:
        raise InputError(f"gun = {gun} particles; expected 0 <= gun <= {MAX_PRIMARIES}.")
    lo, hi = (float(v) for v in gun_pt)
    if gun and not 0 < lo <= hi:
        raise InputError(f"gun_pt = {gun_pt}; expected 0 < low <= high GeV.")
    n_vertices = 1 + int(rng.poisson(pileup))
    counts = rng.poisson(multiplicity, n_vertices)
    if gun:
        counts[0] = gun
    elif hard_scatter:
        counts[0] = rng.poisson(hard_multiplicity)
    counts = np.minimum(counts, MAX_PRIMARIES)
    n = int(counts.sum())
    vertex = np.repeat(np.arange(n_vertices), counts)
    first = vertex == 0
    sxy, sz = vertex_sigma
    vtx = np.stack([rng.normal(0, sxy, n_vertices), rng.normal(0, sxy, n_vertices),
                    rng.normal(0, sz, n_vertices)])
    pt = spectrum.sample(rng, n)
    if gun:
        pt[first] = rng.uniform(lo, hi, int(first.sum()))
    elif hard_scatter:
        pt[first] = HARD_SCATTER.sample(rng, int(first.sum()))
    eta = rng.uniform(-eta_max, eta_max, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    q = np.where(rng.random(n) < 0.5, -1, 1).astype(np.int64)
    kind = rng.choice(len(SPECIES), size=n, p=[s[2] for s in SPECIES])
    pdg = np.array([s[0] for s in SPECIES])[kind] * q
    mass = np.array([s[1] for s in SPECIES])[kind]
    # Primary index within its vertex, from 1 (no Python loop: position minus the vertex's first row).
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    primary = np.arange(n) - np.repeat(starts, counts) + 1
    particle_id = (((vertex.astype(np.int64) + 1) << VERTEX_SHIFT)
                   | (primary.astype(np.int64) << PRIMARY_SHIFT))
    return {
        "particle_id": particle_id, "particle_type": pdg.astype(np.int64), "q": q, "mass": mass,
        "vx": vtx[0][vertex], "vy": vtx[1][vertex], "vz": vtx[2][vertex],
        "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
    }


def decode_particle_id(particle_id: np.ndarray) -> dict[str, np.ndarray]:
    """TrackML fields ``vertex_id, primary_id, generation, secondary_id, process`` of ids, all ``(N,)``."""
    u = np.asarray(particle_id, dtype=np.int64).view(np.uint64)
    fields = (("vertex_id", 52, 12), ("primary_id", 36, 16), ("generation", 24, 12), ("secondary_id", 12, 12),
              ("process", 0, 12))
    return {name: ((u >> np.uint64(s)) & np.uint64((1 << b) - 1)).astype(np.int64) for name, s, b in fields}
