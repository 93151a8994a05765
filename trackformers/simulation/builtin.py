"""The built-in engine: generate particles, propagate them, digitise, add noise, assemble a TrackML Event.

Every random number comes from one ``numpy.random.Generator`` seeded by the caller, so an event is a pure
function of (seed, options). Hits are shuffled before ``hit_id`` 1..N is assigned, so hit order carries no
truth. Units: mm, GeV, T.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
import pandas as pd

from trackformers.errors import InputError
from trackformers.events import DTYPES, HIT_COLUMNS, PARTICLE_COLUMNS, TRUTH_COLUMNS, Event
from trackformers.simulation import generator, propagation
from trackformers.simulation.geometry import Layer, layers_of, module_ids_many, module_table, select_volumes


@dataclass(frozen=True)
class Config:
    """Options of the built-in engine (all keyword arguments of ``simulate_event`` besides the contract's).

    Attributes:
        multiplicity: mean charged particles per minimum-bias interaction (Poisson).
        eta_max: |η| range of generated particles (at most 4).
        hard_scatter: make the first interaction a harder, ttbar-like one.
        hard_multiplicity: mean charged particles of the hard scatter.
        gun: particle-gun mode: exactly this many particles (pT uniform in ``gun_pt``) instead of the first
            interaction; pile-up is still added on top when ``pileup > 0``. 0 (the default): no gun.
        gun_pt: (low, high) pT of the gun, GeV.
        pt_min: lower edge of the minimum-bias pT spectrum, GeV.
        efficiency: probability that a crossing of an active area gives a hit.
        noise: noise hits as a fraction of the particle hits, spread over the layers like the particle hits
            and uniform on each layer's surface.
        scattering: Highland multiple scattering at each crossing.
        smearing: Gaussian smearing of the measured positions (true positions are always exact).
        bfield: solenoid field along +z, T.
        beam_sigma_z: longitudinal σ of the Gaussian beam spot, mm (where along the beam the interactions lie).
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
    beam_sigma_z: float = generator.BEAM_SIGMA_Z

    @classmethod
    def from_options(cls, options: dict[str, object], names: dict[str, str] | None = None) -> Config:
        """The checked configuration of ``options``; InputError (one sentence) for an unknown or bad one.

        ``names`` maps an option to what the caller calls it (e.g. ``{"eta_max": "--eta-max"}`` from the
        command line), so that the message names what the user typed."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError(f"unknown simulation option '{unknown[0]}'; expected one of "
                             f"{', '.join(sorted(known))}.")
        cfg = cls(**options)  # type: ignore[arg-type]

        def bad(key: str, shown: object, expected: str) -> InputError:
            if names and key in names:
                return InputError(f"{names[key]} {shown}: expected {expected}.")
            return InputError(f"{key} = {shown}; expected {expected}.")

        if not 0 <= cfg.efficiency <= 1:
            raise bad("efficiency", cfg.efficiency, "a probability in [0, 1]")
        if not cfg.noise >= 0:
            raise bad("noise", cfg.noise, "a fraction >= 0")
        if not cfg.bfield > 0:
            raise bad("bfield", f"{cfg.bfield} T", "a positive field")
        if not 0 <= cfg.beam_sigma_z <= 1000:
            raise bad("beam_sigma_z", f"{cfg.beam_sigma_z} mm", "a beam-spot length in [0, 1000] mm")
        if not 0 < cfg.pt_min < 100:
            raise bad("pt_min", f"{cfg.pt_min} GeV", "0 < pt_min < 100")
        if not 0 < cfg.eta_max <= 4:
            raise bad("eta_max", cfg.eta_max, "0 < |eta| range <= 4")
        if not 0 <= cfg.gun <= generator.MAX_PRIMARIES:
            raise bad("gun", f"{cfg.gun} particles", f"0 <= gun <= {generator.MAX_PRIMARIES}")
        lo, hi = cfg.gun_pt
        if not 0 < lo <= hi:
            raise bad("gun_pt", f"{lo:g},{hi:g}", "0 < low <= high GeV")
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
        spectrum=generator.Spectrum(pt_min=cfg.pt_min), vertex_sigma=(generator.BEAM_SIGMA_XY, cfg.beam_sigma_z))
    state = {"x": parts["vx"], "y": parts["vy"], "z": parts["vz"], "px": parts["px"], "py": parts["py"],
             "pz": parts["pz"], "q": parts["q"], "mass": parts["mass"]}
    cross = propagation.propagate(state, _surfaces(layers), rng, bfield=cfg.bfield,
                                  scattering=cfg.scattering)
    tab = layer_table(layers)
    return finish_event(_overlaps(cross, tab), parts, tab, cfg, rng, event_id=event_id)


def finish_event(cross: dict[str, np.ndarray], parts: dict[str, np.ndarray], tab: dict, cfg: Config,
                 rng: np.random.Generator, *, event_id: int, source: str = "simulator") -> Event:
    """Crossings -> validated Event: hit efficiency, smearing, noise, shuffling, ids, weights.

    Args:
        cross: ``(H,)`` arrays ``particle`` (row in ``parts``), ``layer`` (index into ``tab``'s layers),
            ``module``, true ``x, y, z`` (mm), ``r``, ``phi``, momentum ``px, py, pz`` (GeV) at the crossing.
        parts: ``(P,)`` particle arrays with the :data:`PARTICLE_COLUMNS` except ``nhits``.
        tab: :func:`layer_table` of the simulated layers.
    """
    keep = rng.random(len(cross["layer"])) < cfg.efficiency
    cross = {k: v[keep] for k, v in cross.items()}
    signal = _digitise(cross, tab, rng, smear=cfg.smearing)
    signal["particle_id"] = parts["particle_id"][cross["particle"]]
    noise = _noise(np.bincount(cross["layer"], minlength=len(tab["disk"])), cfg.noise, tab, rng)
    perm = rng.permutation(len(signal["x"]) + len(noise["x"]))
    hit_id = np.arange(1, len(perm) + 1, dtype=np.int64)

    def column(name: str) -> np.ndarray:  # shuffled, in its TrackML dtype
        return np.concatenate([signal[name], noise[name]])[perm].astype(DTYPES[name], copy=False)

    hits_df = pd.DataFrame({"hit_id": hit_id, **{c: column(c) for c in HIT_COLUMNS if c != "hit_id"}})
    truth_df = pd.DataFrame({"hit_id": hit_id, **{c: column(c) for c in TRUTH_COLUMNS if c not in
                                                   ("hit_id", "weight")}})
    nhits = np.bincount(cross["particle"], minlength=len(parts["particle_id"]))
    particles_df = pd.DataFrame({c: (nhits if c == "nhits" else parts[c]).astype(DTYPES[c], copy=False)
                                 for c in PARTICLE_COLUMNS})
    truth_df["weight"] = _weights(truth_df, particles_df)
    return Event(int(event_id), hits_df, truth_df, particles_df, source=source).validate()


@lru_cache(maxsize=64)
def _surfaces(layers: tuple[Layer, ...]) -> propagation.Surfaces:
    return propagation.build(layers)


def _weights(truth: pd.DataFrame, particles: pd.DataFrame) -> np.ndarray:
    from trackformers.metrics import hit_weights  # imported late: metrics is not needed to build the geometry

    return np.asarray(hit_weights(truth=truth, particles=particles), dtype=np.float32)


@lru_cache(maxsize=64)
def layer_table(layers: tuple[Layer, ...]) -> dict:
    """Per-layer arrays ``(L,)`` (ids, kind, position, extent, resolution) and the module table."""
    return {
        "volume_id": np.array([lay.volume_id for lay in layers], dtype=np.int64),
        "layer_id": np.array([lay.layer_id for lay in layers], dtype=np.int64),
        "disk": np.array([lay.kind == "disk" for lay in layers], dtype=bool),
        "position": np.array([lay.position for lay in layers]),
        "lo": np.array([lay.lo for lay in layers]),
        "hi": np.array([lay.hi for lay in layers]),
        "sigma_u": np.array([lay.sigma_u for lay in layers]),
        "sigma_v": np.array([lay.sigma_v for lay in layers]),
        "modules": module_table(layers),
    }


def _overlaps(cross: dict[str, np.ndarray], tab: dict) -> dict[str, np.ndarray]:
    """Add ``phi``, ``r`` and the module id of each crossing, and a second crossing (same true point) on
    the neighbouring module where the crossing lies in the φ overlap of two modules."""
    phi = np.arctan2(cross["y"], cross["x"])
    r = np.hypot(cross["x"], cross["y"])
    module, neighbour = module_ids_many(tab["modules"], cross["layer"], phi,
                                        np.where(tab["disk"][cross["layer"]], r, cross["z"]))
    dup = np.flatnonzero(neighbour > 0)
    out = {k: np.concatenate([val, val[dup]]) for k, val in (*cross.items(), ("phi", phi), ("r", r))}
    out["module"] = np.concatenate([module, neighbour[dup]])
    return out


def _digitise(cross: dict[str, np.ndarray], tab: dict, rng: np.random.Generator, *,
              smear: bool) -> dict[str, np.ndarray]:
    """Measured positions (smeared on the surface: rφ and z on barrels, rφ and r on disks) and ids."""
    lay, r, phi, tz = cross["layer"], cross["r"], cross["phi"], cross["z"]
    disk = tab["disk"][lay]
    g = rng.standard_normal((2, len(lay))) if smear else np.zeros((2, len(lay)))
    du, dv = g[0] * tab["sigma_u"][lay], g[1] * tab["sigma_v"][lay]
    r_m = np.where(disk, r + dv, r)
    phi_m = phi + du / r
    return {
        "x": r_m * np.cos(phi_m), "y": r_m * np.sin(phi_m), "z": np.where(disk, tz, tz + dv),
        "volume_id": tab["volume_id"][lay], "layer_id": tab["layer_id"][lay],
        "module_id": cross["module"], "tx": cross["x"], "ty": cross["y"], "tz": tz,
        "tpx": cross["px"], "tpy": cross["py"], "tpz": cross["pz"],
    }


def _noise(per_layer: np.ndarray, fraction: float, tab: dict,
           rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Noise hits (particle_id 0): Poisson(fraction × particle hits) per layer, uniform on its surface."""
    counts = rng.poisson(fraction * per_layer) if fraction > 0 else np.zeros(len(per_layer), dtype=np.int64)
    lay = np.repeat(np.arange(len(per_layer)), counts)
    pos, lo, hi, disk = tab["position"][lay], tab["lo"][lay], tab["hi"][lay], tab["disk"][lay]
    phi = rng.uniform(-np.pi, np.pi, len(lay))
    u = rng.random(len(lay))
    # Uniform in area: z uniform on a cylinder, r² uniform on a disk.
    r = np.where(disk, np.sqrt(lo * lo + u * (hi * hi - lo * lo)), pos)
    z = np.where(disk, pos, lo + u * (hi - lo))
    x, y = r * np.cos(phi), r * np.sin(phi)
    zero = np.zeros(len(lay))
    return {
        "x": x, "y": y, "z": z, "volume_id": tab["volume_id"][lay], "layer_id": tab["layer_id"][lay],
        "module_id": module_ids_many(tab["modules"], lay, phi, np.where(disk, r, z))[0],
        "tx": x, "ty": y, "tz": z, "tpx": zero, "tpy": zero, "tpz": zero,
        "particle_id": np.zeros(len(lay), dtype=np.int64),
    }
