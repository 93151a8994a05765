"""Noise hits of the ACTS engine, on the GenericDetector's own sensitive modules.

The built-in engine puts noise uniformly on its idealised layer surfaces; here each noise hit lies on a real
ACTS module (rectangle or trapezoid, uniform in area) and carries that module's sensitive id as
``module_id``, so noise and particle hits share one module numbering. The module table is read from pyacts
once (:func:`module_table`); the sampling (:func:`sample`) and the event update (:func:`add_noise`) are plain
numpy/pandas and tested without pyacts. Units: mm.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from trackformers.events import DTYPES, Event
from trackformers.simulation.geometry import Layer


@lru_cache(maxsize=16)
def module_table(geometry: Any, layers: tuple[Layer, ...]) -> dict[str, np.ndarray]:
    """Sensitive modules of an ACTS tracking geometry on ``layers``, as ``(S,)`` / ``(S, 3)`` arrays.

    ``layer`` (index into ``layers``), ``module_id`` (ACTS sensitive id), ``center``, ``u``, ``v`` (global
    position of the local origin and unit local axes, mm), ``half_x_lo``, ``half_x_hi`` (half widths at
    local y = -half_y and +half_y: equal for rectangles), ``half_y``.
    """
    import acts

    ctx = acts.GeometryContext.dangerouslyDefaultConstruct()
    index = {(lay.volume_id, lay.layer_id): i for i, lay in enumerate(layers)}
    rows: list[tuple] = []

    def visit(surface: Any) -> None:
        gid = surface.geometryId
        key = (gid.volume, gid.layer)
        if gid.sensitive == 0 or key not in index:
            return
        b = surface.bounds
        values = list(b.values())
        if type(b).__name__ == "TrapezoidBounds":  # (half x at -y, half x at +y, half y, rotation)
            lo, hi, hy = values[0], values[1], values[2]
        else:  # RectangleBounds: (min x, min y, max x, max y), centred in the GenericDetector
            lo = hi = 0.5 * (values[2] - values[0])
            hy = 0.5 * (values[3] - values[1])
        normal = acts.Vector3(0.0, 0.0, 1.0)  # planar modules: the direction argument is unused
        at = [np.array(surface.localToGlobal(ctx, acts.Vector2(a, c), normal)) for a, c in
              ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))]
        rows.append((index[key], gid.sensitive, at[0], at[1] - at[0], at[2] - at[0], lo, hi, hy))

    geometry.visitSurfaces(visit)
    rows.sort(key=lambda row: (row[0], row[1]))
    names = ("layer", "module_id", "center", "u", "v", "half_x_lo", "half_x_hi", "half_y")
    return {name: np.array([row[i] for row in rows]) for i, name in enumerate(names)}


def sample(table: dict[str, np.ndarray], counts: np.ndarray,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``counts[l]`` points uniform in area over the modules of layer ``l``.

    Returns ``(layer (N,), module_id (N,), xyz (N, 3))``, N = counts.sum(), grouped by layer.
    """
    area = (table["half_x_lo"] + table["half_x_hi"]) * table["half_y"] * 2.0
    picks = []
    for lay in np.flatnonzero(counts):  # one step per layer (~50), never per hit
        mods = np.flatnonzero(table["layer"] == lay)
        picks.append(rng.choice(mods, size=int(counts[lay]), p=area[mods] / area[mods].sum()))
    module = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    lo, hi, hy = table["half_x_lo"][module], table["half_x_hi"][module], table["half_y"][module]
    # Uniform on a trapezoid: y from its linear density (inverse CDF), then x uniform across the width.
    t, s = rng.random(len(module)), rng.random(len(module))
    slope = (hi - lo) / np.where(lo + hi > 0, lo + hi, 1.0)
    w = np.where(np.abs(slope) > 1e-9, (np.sqrt(np.maximum(1 + slope * (slope + 2 * (2 * t - 1)), 0.0)) - 1)
                 / np.where(np.abs(slope) > 1e-9, slope, 1.0), 2 * t - 1)
    y = w * hy  # w in [-1, 1] with density ∝ 1 + slope·w
    half_x = lo + (hi - lo) * (w + 1) / 2
    x = (2 * s - 1) * half_x
    xyz = table["center"][module] + x[:, None] * table["u"][module] + y[:, None] * table["v"][module]
    return table["layer"][module].astype(np.int64), table["module_id"][module].astype(np.int64), xyz


def add_noise(event: Event, table: dict[str, np.ndarray], layers: tuple[Layer, ...], fraction: float,
              rng: np.random.Generator) -> Event:
    """``event`` plus Poisson(``fraction`` × particle hits) noise hits per layer (``particle_id`` 0, weight 0,
    no smearing), all hits shuffled again and renumbered 1..N."""
    if fraction <= 0:
        return event
    key = {(lay.volume_id, lay.layer_id): i for i, lay in enumerate(layers)}
    per = event.hits.groupby(["volume_id", "layer_id"]).size()
    per_layer = np.zeros(len(layers))
    for (vol, lay), n in per.items():
        per_layer[key[(int(vol), int(lay))]] = n
    lay_idx, module, xyz = sample(table, rng.poisson(fraction * per_layer), rng)
    n = len(module)
    vol_ids = np.array([lay.volume_id for lay in layers], dtype=np.int64)
    lay_ids = np.array([lay.layer_id for lay in layers], dtype=np.int64)
    pos = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    noise_hits = pd.DataFrame({**pos, "volume_id": vol_ids[lay_idx], "layer_id": lay_ids[lay_idx],
                               "module_id": module})
    zero = np.zeros(n)
    noise_truth = pd.DataFrame({"particle_id": np.zeros(n, dtype=np.int64), "tx": pos["x"], "ty": pos["y"],
                                "tz": pos["z"], "tpx": zero, "tpy": zero, "tpz": zero, "weight": zero})
    hits = pd.concat([event.hits.drop(columns="hit_id"), noise_hits], ignore_index=True)
    truth = pd.concat([event.truth.drop(columns="hit_id"), noise_truth], ignore_index=True)
    perm = rng.permutation(len(hits))
    hit_id = pd.Series(np.arange(1, len(perm) + 1), dtype=DTYPES["hit_id"])
    hits = hits.iloc[perm].reset_index(drop=True)
    truth = truth.iloc[perm].reset_index(drop=True)
    hits = pd.concat([hit_id.rename("hit_id"), hits], axis=1).astype({c: DTYPES[c] for c in hits.columns
                                                                      if c in DTYPES})
    truth = pd.concat([hit_id.rename("hit_id"), truth], axis=1).astype({c: DTYPES[c] for c in truth.columns
                                                                        if c in DTYPES})
    return Event(event.event_id, hits, truth, event.particles, source=event.source).validate()
