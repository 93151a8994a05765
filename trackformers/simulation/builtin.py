"""The built-in engine: generate particles, propagate them, digitise, add noise, assemble a TrackML Event.

Every random number comes from one ``numpy.random.Generator`` seeded by the caller, so an event is a pure
function of (seed, options). Hits are shuffled before ``hit_id`` 1..N is assigned, so hit order carries no
truth. Units: mm, GeV, T.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from trackformers.errors import InputError
from trackformers.events import Event, conform
from trackformers.simulation import generator, propagation
from trackformers.simulation.geometry import Layer, layers_of, module_ids, select_volumes


@dataclass(frozen=True)
class Config:
    """Options of the built-in engine (all keyword arguments of ``simulate_event`` besides the contract's).

    Attributes:
        multiplicity: mean charged particles per minimum-bias interaction (Poisson).
        eta_max: |η| range of generated particles (at most 4).
        hard_scatter: make the first interaction a harder, ttbar-like one.
        hard_multiplicity: mean charged particles of the hard scatter.
        gun: particle-gun mode: exactly this many particles (pT uniform in ``gun_pt``) instead of the first
            interaction; pile-up is still added on top when ``pileup > 0``.
        gun_pt: (low, high) pT of the gun, GeV.
        pt_min: lower edge of the minimum-bias pT spectrum, GeV.
        efficiency: probability that a crossing of an active area gives a hit.
        noise: noise hits as a fraction of the particle hits, spread over the layers like the particle hits
            and uniform on each layer's surface.
        scattering: Highland multiple scattering at each crossing.
        smearing: Gaussian smearing of the measured positions (true positions are always exact).
        bfield: solenoid field along +z, T.
    """

    multiplicity: float = 45.0
    eta_max: float = 3.0
    hard_scatter: bool = False
    hard_multiplicity: float = 120.0
    gun: int = 0
    gun_pt: tuple[float, float] = (1.0, 10.0)
    pt_min: float = 0.1
    efficiency: float = 0.98
    noise: float = 0.0
    scattering: bool = True
    smearing: bool = True
    bfield: float = 2.0

    @classmethod
    def from_options(cls, options: dict[str, object]) -> Config:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError(f"unknown simulation option '{unknown[0]}'; expected one of "
                             f"{', '.join(sorted(known))}.")
        cfg = cls(**options)  # type: ignore[arg-type]
        if not 0 <= cfg.efficiency <= 1:
            raise InputError(f"efficiency = {cfg.efficiency}; expected a probability in [0, 1].")
        if not cfg.noise >= 0:
            raise InputError(f"noise = {cfg.noise}; expected a fraction >= 0.")
        if not cfg.bfield > 0:
            raise InputError(f"bfield = {cfg.bfield} T; expected a positive field.")
        if not 0 < cfg.pt_min < 100:
            raise InputError(f"pt_min = {cfg.pt_min} GeV; expected 0 < pt_min < 100.")
        return cfg


def simulate_event(*, seed: int | np.random.SeedSequence, pileup: float = 0.0, volumes: object = None,
                   event_id: int = 0, **options: object) -> Event:
    """One validated event from the built-in engine (see :class:`Config` for ``options``)."""
    cfg = Config.from_options(options)
    vols = select_volumes(volumes)
    layers = layers_of(vols)
    rng = np.random.default_rng(seed)
    parts = generator.generate(
        rng, pileup=pileup, multiplicity=cfg.multiplicity, eta_max=cfg.eta_max, hard_scatter=cfg.hard_scatter,
        hard_multiplicity=cfg.hard_multiplicity, gun=cfg.gun, gun_pt=cfg.gun_pt,
        spectrum=generator.Spectrum(pt_min=cfg.pt_min))
    state = {"x": parts["vx"], "y": parts["vy"], "z": parts["vz"], "px": parts["px"], "py": parts["py"],
             "pz": parts["pz"], "q": parts["q"], "mass": parts["mass"]}
    cross = propagation.propagate(state, propagation.build(layers), rng, bfield=cfg.bfield,
                                  scattering=cfg.scattering)
    cross = _overlaps(cross, layers)
    keep = rng.random(len(cross["layer"])) < cfg.efficiency
    cross = {k: v[keep] for k, v in cross.items()}
    signal = _digitise(cross, layers, rng, smear=cfg.smearing)
    signal["particle_id"] = parts["particle_id"][cross["particle"]]
    noise = _noise(np.bincount(cross["layer"], minlength=len(layers)), cfg.noise, layers, rng)
    hits = {k: np.concatenate([signal[k], noise[k]]) for k in signal}
    perm = rng.permutation(len(hits["x"]))
    hits = {k: v[perm] for k, v in hits.items()}
    hit_id = np.arange(1, len(perm) + 1, dtype=np.int64)
    nhits = np.bincount(cross["particle"], minlength=len(parts["particle_id"]))
    hits_df = conform(pd.DataFrame({
        "hit_id": hit_id, "x": hits["x"], "y": hits["y"], "z": hits["z"], "volume_id": hits["volume_id"],
        "layer_id": hits["layer_id"], "module_id": hits["module_id"]}))
    truth_df = conform(pd.DataFrame({
        "hit_id": hit_id, "particle_id": hits["particle_id"], "tx": hits["tx"], "ty": hits["ty"],
        "tz": hits["tz"], "tpx": hits["tpx"], "tpy": hits["tpy"], "tpz": hits["tpz"],
        "weight": np.zeros(len(hit_id), dtype=np.float32)}))
    particles_df = conform(pd.DataFrame({
        "particle_id": parts["particle_id"], "particle_type": parts["particle_type"], "vx": parts["vx"],
        "vy": parts["vy"], "vz": parts["vz"], "px": parts["px"], "py": parts["py"], "pz": parts["pz"],
        "q": parts["q"], "nhits": nhits.astype(np.int64)}))
    truth_df["weight"] = _weights(truth_df, particles_df)
    return Event(int(event_id), hits_df, truth_df, particles_df, source="simulator").validate()


def _weights(truth: pd.DataFrame, particles: pd.DataFrame) -> np.ndarray:
    try:
        from trackformers.metrics import hit_weights
    except ImportError:  # the package namespace may not re-export it (yet); the function is the same
        from trackformers.metrics.weights import hit_weights

    return np.asarray(hit_weights(truth=truth, particles=particles), dtype=np.float32)


def _layer_table(layers: tuple[Layer, ...]) -> dict[str, np.ndarray]:
    return {
        "volume_id": np.array([lay.volume_id for lay in layers], dtype=np.int64),
        "layer_id": np.array([lay.layer_id for lay in layers], dtype=np.int64),
        "disk": np.array([lay.kind == "disk" for lay in layers]),
        "sigma_u": np.array([lay.sigma_u for lay in layers]),
        "sigma_v": np.array([lay.sigma_v for lay in layers]),
    }


def _modules(layer: np.ndarray, phi: np.ndarray, v: np.ndarray,
             layers: tuple[Layer, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Module and overlap-neighbour ids ``(H,)`` (see ``module_ids``): one call per layer (sorted once)."""
    order = np.argsort(layer, kind="stable")
    bounds = np.searchsorted(layer[order], np.arange(len(layers) + 1))
    out = np.empty(len(layer), dtype=np.int64)
    nbr = np.empty(len(layer), dtype=np.int64)
    for i, lay in enumerate(layers):
        sel = order[bounds[i]:bounds[i + 1]]
        if sel.size:
            out[sel], nbr[sel] = module_ids(lay, phi[sel], v[sel])
    return out, nbr


def _overlaps(cross: dict[str, np.ndarray], layers: tuple[Layer, ...]) -> dict[str, np.ndarray]:
    """Add the module id of each crossing, plus a second crossing on the neighbour in φ overlaps."""
    disk = np.array([lay.kind == "disk" for lay in layers], dtype=bool)[cross["layer"]]
    v = np.where(disk, np.hypot(cross["x"], cross["y"]), cross["z"])
    module, neighbour = _modules(cross["layer"], np.arctan2(cross["y"], cross["x"]), v, layers)
    dup = np.flatnonzero(neighbour > 0)
    out = {k: np.concatenate([val, val[dup]]) for k, val in cross.items()}
    out["module"] = np.concatenate([module, neighbour[dup]])
    return out


def _digitise(cross: dict[str, np.ndarray], layers: tuple[Layer, ...], rng: np.random.Generator, *,
              smear: bool) -> dict[str, np.ndarray]:
    """Measured positions (smeared on the surface: rφ and z on barrels, rφ and r on disks) and ids."""
    tab = _layer_table(layers)
    lay = cross["layer"]
    tx, ty, tz = cross["x"], cross["y"], cross["z"]
    r = np.hypot(tx, ty)
    phi = np.arctan2(ty, tx)
    disk = tab["disk"][lay]
    g = rng.standard_normal((2, len(lay))) if smear else np.zeros((2, len(lay)))
    du, dv = g[0] * tab["sigma_u"][lay], g[1] * tab["sigma_v"][lay]
    r_m = np.where(disk, r + dv, r)
    phi_m = phi + du / r
    return {
        "x": r_m * np.cos(phi_m), "y": r_m * np.sin(phi_m), "z": np.where(disk, tz, tz + dv),
        "volume_id": tab["volume_id"][lay], "layer_id": tab["layer_id"][lay],
        "module_id": cross["module"], "tx": tx, "ty": ty, "tz": tz,
        "tpx": cross["px"], "tpy": cross["py"], "tpz": cross["pz"],
    }


def _noise(per_layer: np.ndarray, fraction: float, layers: tuple[Layer, ...],
           rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Noise hits (particle_id 0): Poisson(fraction × particle hits) per layer, uniform on its surface."""
    counts = rng.poisson(fraction * per_layer) if fraction > 0 else np.zeros(len(layers), dtype=np.int64)
    lay = np.repeat(np.arange(len(layers)), counts)
    tab = _layer_table(layers)
    pos = np.array([lay_.position for lay_ in layers])[lay]
    lo = np.array([lay_.lo for lay_ in layers])[lay]
    hi = np.array([lay_.hi for lay_ in layers])[lay]
    disk = tab["disk"][lay]
    phi = rng.uniform(-np.pi, np.pi, len(lay))
    u = rng.random(len(lay))
    # Uniform in area: z uniform on a cylinder, r² uniform on a disk.
    r = np.where(disk, np.sqrt(lo * lo + u * (hi * hi - lo * lo)), pos)
    z = np.where(disk, pos, lo + u * (hi - lo))
    x, y = r * np.cos(phi), r * np.sin(phi)
    zero = np.zeros(len(lay))
    return {
        "x": x, "y": y, "z": z, "volume_id": tab["volume_id"][lay], "layer_id": tab["layer_id"][lay],
        "module_id": _modules(lay, phi, np.where(disk, r, z), layers)[0],
        "tx": x, "ty": y, "tz": z, "tpx": zero, "tpy": zero, "tpz": zero,
        "particle_id": np.zeros(len(lay), dtype=np.int64),
    }
