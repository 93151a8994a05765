"""The ACTS engine: the same API as the built-in engine, with ACTS Fatras doing the propagation.

Needs pyacts (``pip install "trackformers[acts]"``, ``import acts``; written for and tested with pyacts 48.1).
The particles are drawn by our own generator (same pile-up, multiplicities, spectrum and ids as the built-in
engine), written as an ACTS particle CSV and read by ``CsvParticleReader``; Fatras propagates them through
ACTS's GenericDetector (TrackML's layout: the same volume/layer ids and layer positions) in
a constant field along z; the sim hits come back in memory (:mod:`trackformers.simulation.acts_fatras`).
Efficiency, smearing, shuffling and weights are then applied by the built-in engine's own code; noise goes
on the GenericDetector's modules (:mod:`trackformers.simulation.acts_noise`).

The ACTS-specific parts that do not need pyacts (geometry-id and barcode mapping, the particle CSV and
the hits -> crossings conversion) are pure functions, tested without pyacts.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trackformers.errors import InputError
from trackformers.events import Event
from trackformers.simulation import acts_fatras, acts_noise, generator
from trackformers.simulation.builtin import Config, finish_event, layer_table
from trackformers.simulation.geometry import Layer, layers_of, select_volumes

#: Fatras simulates particles above this momentum (GeV): below the generator's default 0.1 GeV pT threshold.
P_MIN = 0.05
MISSING = 'the ACTS engine needs pyacts: pip install "trackformers[acts]"'


def require() -> Any:
    """Import and return the ``acts`` module; InputError with :data:`MISSING` if pyacts is absent."""
    try:
        import acts
        import acts.examples
        import acts.examples.simulation  # noqa: F401 - checked here so the failure names pyacts
    except ImportError as err:
        raise InputError(f"{MISSING} ({err}).") from None
    return acts


def split_geometry_id(geometry_id: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ACTS geometry ids ``(N,)`` (uint64 or int64) -> ``(volume_id, layer_id, module_id)``, int64 ``(N,)``.

    volume = id >> 56 & 0xff, layer = id >> 36 & 0xfff, sensitive (module) = id >> 8 & 0xfffff.
    """
    g = np.asarray(geometry_id)
    u = g.astype(np.uint64) if g.dtype.kind == "u" else g.astype(np.int64).view(np.uint64)
    volume = (u >> np.uint64(56)) & np.uint64(0xFF)
    layer = (u >> np.uint64(36)) & np.uint64(0xFFF)
    sensitive = (u >> np.uint64(8)) & np.uint64(0xFFFFF)
    return volume.astype(np.int64), layer.astype(np.int64), sensitive.astype(np.int64)


#: ACTS (v40+) writes a barcode as five CSV columns (in this order); the TrackML particle_id field each one
#: maps to, as (shift, bits).
BARCODE_COLUMNS: tuple[tuple[str, int, int], ...] = (
    ("particle_id_pv", 52, 12),       # vertex_primary -> vertex
    ("particle_id_sv", 0, 12),        # vertex_secondary -> process
    ("particle_id_part", 36, 16),     # particle -> primary
    ("particle_id_gen", 24, 12),      # generation -> generation
    ("particle_id_subpart", 12, 12),  # sub_particle -> secondary
)


def trackml_to_barcode(particle_id: np.ndarray) -> dict[str, np.ndarray]:
    """TrackML ids ``(N,)`` -> ACTS barcode columns (:data:`BARCODE_COLUMNS`), each ``(N,)`` int64."""
    u = np.asarray(particle_id, dtype=np.int64).view(np.uint64)
    return {name: ((u >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)
            for name, shift, bits in BARCODE_COLUMNS}


def barcode_to_trackml(table: pd.DataFrame | dict[str, np.ndarray]) -> np.ndarray:
    """ACTS barcode columns (a table with :data:`BARCODE_COLUMNS`) -> TrackML particle ids ``(N,)`` int64.

    Exact inverse of :func:`trackml_to_barcode`; Fatras secondaries keep generation and sub-particle (clipped
    to the 12-bit TrackML field, which Fatras's small per-parent counters never reach) and their secondary
    vertex becomes the TrackML process field.
    """
    out = None
    for name, shift, bits in BARCODE_COLUMNS:
        field = np.minimum(np.asarray(table[name], dtype=np.int64), (1 << bits) - 1).astype(np.uint64)
        out = field << np.uint64(shift) if out is None else out | (field << np.uint64(shift))
    return out.view(np.int64)


def particles_csv(parts: dict[str, np.ndarray]) -> pd.DataFrame:
    """Rows for ACTS's ``CsvParticleReader``: barcode columns, PDG, process, vertex (mm, ns), p (GeV), m, q."""
    n = len(parts["particle_id"])
    return pd.DataFrame({
        **trackml_to_barcode(parts["particle_id"]), "particle_type": parts["particle_type"],
        "process": np.zeros(n, dtype=np.int64), "vx": parts["vx"], "vy": parts["vy"], "vz": parts["vz"],
        "vt": np.zeros(n), "px": parts["px"], "py": parts["py"], "pz": parts["pz"], "m": parts["mass"],
        "q": parts["q"].astype(np.float64),
    })


def crossings_from_hits(hits: pd.DataFrame, parts: dict[str, np.ndarray], layers: tuple[Layer, ...],
                        secondaries: pd.DataFrame | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """ACTS sim hits (``CsvSimHitWriter`` columns) -> (crossings, particles) for ``finish_event``.

    Hits on layers outside ``layers`` are dropped. Hits of particles not in ``parts`` (Fatras secondaries)
    get rows appended from ``secondaries`` (ACTS particle CSV rows), or are dropped if it lacks them.
    """
    volume, layer_id, module = split_geometry_id(hits["geometry_id"].to_numpy())
    index = {(lay.volume_id, lay.layer_id): i for i, lay in enumerate(layers)}
    key = volume * 10_000 + layer_id
    lookup = pd.Series(list(index.values()), index=[v * 10_000 + lay for v, lay in index], dtype=np.int64)
    layer = lookup.reindex(key).fillna(-1).to_numpy(np.int64)
    pid = barcode_to_trackml(hits)
    parts = dict(parts)
    known = pd.Index(parts["particle_id"])
    new = np.setdiff1d(np.unique(pid), known.to_numpy())
    if new.size and secondaries is not None and len(secondaries):
        sec = secondaries.assign(particle_id=barcode_to_trackml(secondaries))
        sec = sec[sec["particle_id"].isin(new)].drop_duplicates("particle_id")
        extra = {"particle_id": sec["particle_id"].to_numpy(np.int64),
                 "particle_type": sec["particle_type"].to_numpy(np.int64),
                 "q": np.rint(sec["q"].to_numpy()).astype(np.int64), "mass": sec["m"].to_numpy(np.float64),
                 **{c: sec[c].to_numpy(np.float64) for c in ("vx", "vy", "vz", "px", "py", "pz")}}
        parts = {k: np.concatenate([v, extra[k]]) for k, v in parts.items()}
        known = pd.Index(parts["particle_id"])
    row = known.get_indexer(pid)
    keep = (layer >= 0) & (row >= 0)
    x, y, z = (hits[c].to_numpy(np.float64)[keep] for c in ("tx", "ty", "tz"))
    cross = {"particle": row[keep].astype(np.int64), "layer": layer[keep], "module": module[keep],
             "x": x, "y": y, "z": z, "r": np.hypot(x, y), "phi": np.arctan2(y, x),
             **{k: hits[f"t{k}"].to_numpy(np.float64)[keep] for k in ("px", "py", "pz")}}
    return cross, parts


def simulate_event(*, seed: int | np.random.SeedSequence, pileup: float = 0.0, volumes: object = None,
                   event_id: int = 0, **options: object) -> Event:
    """One validated event with ACTS Fatras (options as in :class:`~trackformers.simulation.builtin.Config`;
    module overlaps are the GenericDetector's own, and ``scattering=False`` switches off all of Fatras's
    interactions)."""
    cfg = Config.from_options(options)
    layers = layers_of(select_volumes(volumes))
    require()
    rng = np.random.default_rng(seed)
    parts = generator.generate(
        rng, pileup=pileup, multiplicity=cfg.multiplicity, eta_max=cfg.eta_max, hard_scatter=cfg.hard_scatter,
        hard_multiplicity=cfg.hard_multiplicity, gun=cfg.gun, gun_pt=cfg.gun_pt,
        spectrum=generator.Spectrum(pt_min=cfg.pt_min), vertex_sigma=(generator.BEAM_SIGMA_XY, cfg.beam_sigma_z))
    # below every generated momentum (p >= pT), also when pt_min or the gun's pT go below P_MIN
    p_min = min(P_MIN, 0.5 * cfg.pt_min, 0.5 * float(cfg.gun_pt[0]))
    with tempfile.TemporaryDirectory(prefix="trackformers-acts-") as tmp:
        hits, sim = acts_fatras.run(particles_csv(parts), seed=int(rng.integers(1, 2**31)), bfield=cfg.bfield,
                                    interactions=cfg.scattering, p_min=p_min, workdir=Path(tmp))
    cross, parts = crossings_from_hits(hits, parts, layers, sim)
    # Noise goes on the GenericDetector's modules (acts_noise), not on the built-in idealised layers.
    event = finish_event(cross, parts, layer_table(layers), replace(cfg, noise=0.0), rng, event_id=event_id,
                         source="acts")
    if cfg.noise <= 0:
        return event
    table = acts_noise.module_table(acts_fatras.geometry(cfg.bfield)[0], layers)
    return acts_noise.add_noise(event, table, layers, cfg.noise, rng)


__all__ = ["BARCODE_COLUMNS", "MISSING", "P_MIN", "barcode_to_trackml", "crossings_from_hits", "particles_csv",
           "require", "simulate_event", "split_geometry_id", "trackml_to_barcode"]
