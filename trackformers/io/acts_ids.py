"""ACTS identifier codecs: 64-bit geometry ids and particle barcodes ⇄ one int64 ``particle_id``.

Geometry id (``Acts::GeometryIdentifier``, 64 bits, most significant first)::

    volume 8 bits (<<56) | boundary 8 (<<48) | layer 12 (<<36) | approach 8 (<<28)
    | sensitive 20 (<<8) | extra 8

Particle barcode (``ActsFatras::Barcode``) packed into one 64-bit word, exactly the layout of the single
``particle_id`` branch of older ACTS files, so old and new files give the same ids::

    vertex_primary 12 bits (<<52) | vertex_secondary 12 (<<40) | particle 16 (<<24) | generation 8 (<<16)
    | sub_particle 16 (<<0)

The packed word is stored as int64 (the same 64 bits; ids with ``vertex_primary >= 2048`` are negative).
Packing and unpacking are exact inverses for every int64, so any ``particle_id`` survives a trip through the
barcode branches. All barcode zero (and so ``particle_id == 0``) is noise.
"""

from __future__ import annotations

import numpy as np

from trackformers.errors import InputError

#: (name, shift, bits) of the geometry-id fields.
GEOMETRY_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("volume_id", 56, 8), ("boundary_id", 48, 8), ("layer_id", 36, 12),
    ("approach_id", 28, 8), ("sensitive_id", 8, 20), ("extra_id", 0, 8),
)
#: (name, shift, bits) of the barcode fields (names without the ``barcode_`` branch prefix).
BARCODE_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("vertex_primary", 52, 12), ("vertex_secondary", 40, 12), ("particle", 24, 16),
    ("generation", 16, 8), ("sub_particle", 0, 16),
)


def _unpack(word: np.ndarray, fields: tuple[tuple[str, int, int], ...]) -> dict[str, np.ndarray]:
    u = np.asarray(word).astype(np.uint64, copy=False) if np.asarray(word).dtype.kind == "u" \
        else np.asarray(word, dtype=np.int64).view(np.uint64)
    return {name: ((u >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)
            for name, shift, bits in fields}


def _pack(parts: dict[str, np.ndarray], fields: tuple[tuple[str, int, int], ...], what: str) -> np.ndarray:
    n = len(next(iter(parts.values()))) if parts else 0
    out = np.zeros(n, dtype=np.uint64)
    for name, shift, bits in fields:
        if name not in parts:
            continue
        v = np.asarray(parts[name]).astype(np.int64)
        bad = (v < 0) | (v >= (1 << bits))
        if bad.any():
            raise InputError(f"{what} field '{name}' has value {v[np.argmax(bad)]}; expected 0 <= value < "
                             f"{1 << bits} ({bits} bits).")
        out |= v.astype(np.uint64) << np.uint64(shift)
    return out.view(np.int64)


def decode_geometry_id(geometry_id: np.ndarray) -> dict[str, np.ndarray]:
    """Split geometry ids ``(N,)`` (uint64 or int64) into int64 ``volume_id, boundary_id, layer_id,
    approach_id, sensitive_id, extra_id`` arrays ``(N,)``."""
    return _unpack(geometry_id, GEOMETRY_FIELDS)


def encode_geometry_id(**parts: np.ndarray) -> np.ndarray:
    """Inverse of :func:`decode_geometry_id`: uint64 ids ``(N,)`` from the given fields (missing ones 0)."""
    return _pack(parts, GEOMETRY_FIELDS, "geometry id").view(np.uint64)


def pack_barcode(**parts: np.ndarray) -> np.ndarray:
    """int64 ``particle_id`` ``(N,)`` from barcode fields ``vertex_primary, vertex_secondary, particle,
    generation, sub_particle`` (arrays ``(N,)``); InputError if a field does not fit its bits."""
    return _pack(parts, BARCODE_FIELDS, "barcode")


def unpack_barcode(particle_id: np.ndarray) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_barcode`: int64 barcode fields ``(N,)`` from ``particle_id`` ``(N,)``."""
    return _unpack(particle_id, BARCODE_FIELDS)
