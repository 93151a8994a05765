"""The TrackML detector as data: one row per volume, expanded into one :class:`Layer` per sensitive layer.

Units: mm. Barrel layers are cylinders of radius ``r`` around the beam (z) axis, active for
``zmin <= z <= zmax``; disks are planes at ``z``, active for ``rmin <= r <= rmax``. Layer ids follow TrackML:
2, 4, 6, … from the innermost barrel layer outwards, and from the most negative ``z`` to the most positive
``z`` on each endcap (so volume 7 layer 2 is the outermost ``-z`` pixel disk and volume 9 layer 2 the
innermost ``+z`` one). Module ids number a φ × z (barrel) or ring × φ (disk) segmentation of modules of
the volume's size, starting at 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from trackformers.errors import InputError

# volume, kind, positions (r for barrels, |z| for disks, mm), active extent (z range of a barrel or r range
# of a disk, mm), module size (rφ width, z or r length, mm), x/X0 per crossing at normal incidence,
# resolution (σ rφ, σ z or r, mm), φ overlap (fraction of a module's φ pitch also covered by its
# neighbour: a crossing there gives a second hit on the neighbouring module). Endcaps at -z and +z share a
# row (negative-z and positive-z volume ids). The overlaps are tuned so that hit counts match TrackML
# (about 12 hits per particle, 55-60k pixel hits at μ = 200): they also stand in for the loopers and
# secondaries that this engine does not simulate, which TrackML has mostly in the pixel detector.
VOLUME_TABLE: tuple[tuple, ...] = (
    # pixel: 50 x 50 µm pitch -> ~15 µm, 16.8 x 72 mm modules, ~1% X0
    (8, "barrel", (32.0, 72.0, 116.0, 172.0), (-490.0, 490.0), (16.8, 72.0), 0.010, (0.015, 0.015), 0.40),
    ((7, 9), "disk", (600.0, 700.0, 820.0, 960.0, 1100.0, 1300.0, 1500.0), (30.0, 176.0), (16.8, 72.0),
     0.010, (0.015, 0.015), 0.40),
    # short strips: 80 µm x 1.2 mm pitch, 48 x 108 mm modules, ~1.5% X0
    (13, "barrel", (260.0, 360.0, 500.0, 660.0), (-1083.0, 1083.0), (48.0, 108.0), 0.015, (0.023, 0.35),
     0.05),
    ((12, 14), "disk", (1220.0, 1500.0, 1800.0, 2150.0, 2550.0, 2950.0), (240.0, 700.0), (48.0, 108.0),
     0.015, (0.023, 0.35), 0.05),
    # long strips: 120 µm x 10.8 mm pitch, ~2% X0
    (17, "barrel", (820.0, 1020.0), (-1083.0, 1083.0), (48.0, 108.0), 0.020, (0.035, 3.1), 0.05),
    ((16, 18), "disk", (1220.0, 1500.0, 1800.0, 2150.0, 2550.0, 2950.0), (750.0, 1020.0), (48.0, 108.0),
     0.020, (0.035, 3.1), 0.05),
)

#: Volume groups by name, for command lines and docs.
PIXEL_VOLUMES: tuple[int, ...] = (7, 8, 9)
SHORT_STRIP_VOLUMES: tuple[int, ...] = (12, 13, 14)
LONG_STRIP_VOLUMES: tuple[int, ...] = (16, 17, 18)


@dataclass(frozen=True)
class Layer:
    """One sensitive layer.

    Attributes:
        volume_id, layer_id: TrackML ids.
        kind: ``"barrel"`` (cylinder) or ``"disk"`` (plane).
        position: radius (barrel) or signed z (disk), mm.
        lo, hi: active extent, z range (barrel) or r range (disk), mm.
        module_width, module_length: module size in rφ and in z (barrel) or r (disk), mm.
        x0: thickness in radiation lengths at normal incidence.
        sigma_u, sigma_v: Gaussian resolution in rφ and in z (barrel) or r (disk), mm.
        overlap: fraction of each module's φ pitch that its neighbour covers too (double hits).
    """

    volume_id: int
    layer_id: int
    kind: str
    position: float
    lo: float
    hi: float
    module_width: float
    module_length: float
    x0: float
    sigma_u: float
    sigma_v: float
    overlap: float = 0.0

    @property
    def n_phi(self) -> int:
        """Modules around φ of a barrel layer (disks: see :meth:`ring_n_phi`)."""
        return max(1, math.ceil(2 * math.pi * self.position / self.module_width))

    @property
    def n_long(self) -> int:
        """Modules along z (barrel) or rings along r (disk)."""
        return max(1, math.ceil((self.hi - self.lo) / self.module_length))

    def ring_n_phi(self) -> np.ndarray:
        """Modules around φ per ring of a disk, ``(n_long,)`` int64, from the ring's mean radius."""
        edges = np.linspace(self.lo, self.hi, self.n_long + 1)
        mid = 0.5 * (edges[:-1] + edges[1:])
        return np.maximum(1, np.ceil(2 * np.pi * mid / self.module_width)).astype(np.int64)

    @property
    def n_modules(self) -> int:
        return self.n_phi * self.n_long if self.kind == "barrel" else int(self.ring_n_phi().sum())


def _expand(table: tuple[tuple, ...]) -> tuple[Layer, ...]:
    layers: list[Layer] = []
    for volume, kind, positions, (lo, hi), (width, length), x0, (su, sv), overlap in table:
        rest = (lo, hi, width, length, x0, su, sv, overlap)
        if kind == "barrel":
            for i, r in enumerate(sorted(positions)):
                layers.append(Layer(volume, 2 * (i + 1), kind, r, *rest))
            continue
        neg, pos = volume
        # TrackML numbers disks from the most negative z upwards on both sides.
        for i, z in enumerate(sorted(positions, reverse=True)):
            layers.append(Layer(neg, 2 * (i + 1), kind, -z, *rest))
        for i, z in enumerate(sorted(positions)):
            layers.append(Layer(pos, 2 * (i + 1), kind, z, *rest))
    return tuple(sorted(layers, key=lambda layer: (layer.volume_id, layer.layer_id)))


#: Every sensitive layer of the detector, sorted by (volume_id, layer_id).
LAYERS: tuple[Layer, ...] = _expand(VOLUME_TABLE)
#: All TrackML volume ids.
VOLUME_IDS: tuple[int, ...] = tuple(sorted({layer.volume_id for layer in LAYERS}))


def select_volumes(volumes: object = None) -> tuple[int, ...]:
    """Normalise a volume selection (None = all; ints or a comma-separated string); InputError if unknown."""
    if volumes is None:
        return VOLUME_IDS
    items = volumes.split(",") if isinstance(volumes, str) else list(volumes)  # type: ignore[arg-type]
    chosen: set[int] = set()
    for item in items:
        try:
            v = int(str(item).strip())
        except ValueError:
            raise InputError(f"volume id {item!r} is not an integer; expected one of "
                             f"{', '.join(map(str, VOLUME_IDS))}.") from None
        if v not in VOLUME_IDS:
            raise InputError(f"unknown volume id {v}; expected one of {', '.join(map(str, VOLUME_IDS))}.")
        chosen.add(v)
    if not chosen:
        raise InputError(f"empty volume selection; expected some of {', '.join(map(str, VOLUME_IDS))}.")
    return tuple(sorted(chosen))


@lru_cache(maxsize=64)
def layers_of(volumes: tuple[int, ...]) -> tuple[Layer, ...]:
    """The layers of the given (already validated) volumes, sorted by (volume_id, layer_id)."""
    keep = set(volumes)
    return tuple(layer for layer in LAYERS if layer.volume_id in keep)


def module_ids(layer: Layer, phi: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Module ids of points at angle ``phi`` (rad) and ``v`` = z (barrel) or r (disk), mm.

    Returns ``(module, neighbour)``, both ``(N,)`` int64 from 1: the module containing the point and, where
    the point lies in the φ overlap of two modules (``layer.overlap``), the other module (else 0). Points
    outside the active extent are clipped to the edge module.
    """
    pos = (np.asarray(phi) / (2 * np.pi)) % 1.0
    n_long = layer.n_long
    i_long = ((np.asarray(v) - layer.lo) / (layer.hi - layer.lo) * n_long).astype(np.int64)
    i_long = np.clip(i_long, 0, n_long - 1)
    if layer.kind == "barrel":
        n_phi = np.full(len(i_long), layer.n_phi, dtype=np.int64)
        base = i_long * layer.n_phi
    else:
        ring = layer.ring_n_phi()
        n_phi = ring[i_long]
        base = np.concatenate([[0], np.cumsum(ring)[:-1]])[i_long]
    u = pos * n_phi
    i_phi = np.minimum(u.astype(np.int64), n_phi - 1)
    frac = u - i_phi
    half = 0.5 * layer.overlap
    step = np.where(frac < half, -1, np.where(frac >= 1 - half, 1, 0))
    neighbour = np.where(step != 0, 1 + base + (i_phi + step) % n_phi, 0)
    return 1 + base + i_phi, neighbour


@dataclass(frozen=True)
class ModuleTable:
    """Per-layer segmentation arrays for :func:`module_ids_many` (rings padded to the widest disk)."""

    lo: np.ndarray        # (L,) mm
    span: np.ndarray      # (L,) mm
    n_long: np.ndarray    # (L,) modules along z / rings along r
    n_phi: np.ndarray     # (L, K) modules around φ per z row (barrel: same for all) or per ring
    offset: np.ndarray    # (L, K) id offset of the row / ring
    overlap: np.ndarray   # (L,)


@lru_cache(maxsize=64)
def module_table(layers: tuple[Layer, ...]) -> ModuleTable:
    """Segmentation of ``layers`` as arrays (cached per layer tuple)."""
    k = max(lay.n_long for lay in layers) if layers else 1
    n_phi = np.ones((len(layers), k), dtype=np.int64)
    offset = np.zeros((len(layers), k), dtype=np.int64)
    for i, lay in enumerate(layers):
        ring = np.full(lay.n_long, lay.n_phi, dtype=np.int64) if lay.kind == "barrel" else lay.ring_n_phi()
        n_phi[i, :lay.n_long] = ring
        offset[i, :lay.n_long] = np.concatenate([[0], np.cumsum(ring)[:-1]])
    return ModuleTable(np.array([lay.lo for lay in layers]), np.array([lay.hi - lay.lo for lay in layers]),
                       np.array([lay.n_long for lay in layers], dtype=np.int64), n_phi, offset,
                       np.array([lay.overlap for lay in layers]))


def module_ids_many(table: ModuleTable, layer: np.ndarray, phi: np.ndarray,
                    v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`module_ids` for points on many layers at once (``layer`` indexes the table's layers).

    Same results as calling :func:`module_ids` layer by layer, in a fixed number of array operations.
    """
    n_long = table.n_long[layer]
    i_long = ((v - table.lo[layer]) / table.span[layer] * n_long).astype(np.int64)
    i_long = np.clip(i_long, 0, n_long - 1)
    n_phi = table.n_phi[layer, i_long]
    base = table.offset[layer, i_long]
    u = ((phi / (2 * np.pi)) % 1.0) * n_phi
    i_phi = np.minimum(u.astype(np.int64), n_phi - 1)
    frac = u - i_phi
    half = 0.5 * table.overlap[layer]
    step = np.where(frac < half, -1, np.where(frac >= 1 - half, 1, 0))
    neighbour = np.where(step != 0, 1 + base + (i_phi + step) % n_phi, 0)
    return 1 + base + i_phi, neighbour
