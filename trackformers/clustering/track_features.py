"""Per-track features for track selection: hit counts, layers, helix-fit residuals and parameters.

Every track of >= ``min_hits`` hits is fitted at once (the helix from the origin of
:mod:`trackformers.clustering.cleaning`; numpy segment sums, no Python loop over tracks). Columns of the
feature matrix, in :data:`FEATURES` order (lengths in mm, momenta in GeV):

* ``n_hits``, ``n_layers`` (distinct layer keys), ``shared_layers`` = n_hits − n_layers;
* ``log_rms_t``, ``log_rms_z``, ``log_max_t``, ``log_max_z``: log(1 + residual / 1 mm) of the transverse and
  longitudinal residuals (root mean square and largest over the track's hits) — a log, because mixed tracks
  have residuals of hundreds of mm next to the ~0.1 mm of a real one;
* ``inv_pt``: 1 / pT of the fitted circle, 1/GeV (pT = 0.3·B·R, B in T, R in m; 0 for a straight line);
* ``abs_z0`` (mm, where the helix meets the beam line), ``abs_cot_theta``;
* ``r_min``, ``r_max``: smallest and largest transverse radius of the hits (mm);
* ``determined``: 1 if the hits' radii spread enough to fix the transverse direction, else 0.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trackformers.clustering.cleaning import fit_helices, fit_tracks
from trackformers.clustering.merging import helix_parameters

#: Column names of :func:`track_features`' matrix.
FEATURES: tuple[str, ...] = ("n_hits", "n_layers", "shared_layers", "log_rms_t", "log_rms_z", "log_max_t",
                             "log_max_z", "inv_pt", "abs_z0", "abs_cot_theta", "r_min", "r_max", "determined")


def hit_columns(hits: pd.DataFrame, hit_ids: np.ndarray, *, where: str = "hits table",
                need_layer: bool = False) -> tuple[np.ndarray, ...]:
    """x, y, z (mm, float64) and the layer key volume_id·10000 + layer_id (int64, or None without those columns)
    of ``hit_ids`` (shape (N,)), looked up by hit id in ``hits`` (an event's hits table, any row order);
    InputError naming the first hit id the table lacks, or the missing layer columns when ``need_layer``."""
    from trackformers.errors import InputError

    rows = pd.Index(hits["hit_id"].to_numpy()).get_indexer(np.asarray(hit_ids))
    if (rows < 0).any():
        raise InputError(f"{where}: no hit_id {np.asarray(hit_ids)[rows < 0][0]} ({int((rows < 0).sum())} of "
                         f"{len(rows)} track hits missing); expected the hits of the event the tracks belong to.")
    x, y, z = (hits[c].to_numpy(np.float64)[rows] for c in ("x", "y", "z"))
    missing = [c for c in ("volume_id", "layer_id") if c not in hits.columns]
    if missing and need_layer:
        raise InputError(f"{where}: the hits table has no {', '.join(missing)} column; expected the detector layer "
                         "of every hit.")
    layer = None
    if not missing:
        layer = (hits["volume_id"].to_numpy(np.int64) * 10_000 + hits["layer_id"].to_numpy(np.int64))[rows]
    return x, y, z, layer


def segment_extreme(values: np.ndarray, group: np.ndarray, n_groups: int, largest: bool) -> np.ndarray:
    """Per group (shape (n_groups,)): the largest (or smallest) of ``values`` over its members; 0 if empty."""
    out = np.zeros(n_groups)
    if values.size == 0:
        return out
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ufunc = np.maximum if largest else np.minimum
    out[g[starts]] = ufunc.reduceat(values[order], starts)
    return out


def track_features(x: np.ndarray, y: np.ndarray, z: np.ndarray, layer: np.ndarray, track_id: np.ndarray, *,
                   min_hits: int = 3, field_t: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Features of every track of >= ``min_hits`` hits.

    Args:
        x, y, z: hit positions (mm), shape (N,).
        layer: integer layer key per hit (e.g. volume_id·10000 + layer_id), shape (N,).
        track_id: integer track id per hit, shape (N,), any order.
        min_hits: shorter tracks get no row (the metrics do not count them).
        field_t: solenoid field (T) that turns the fitted radius into pT.

    Returns:
        ``(ids, features)``: the tracks' ids, shape (T,) int64 ascending, and float32 (T, len(FEATURES)).
    """
    ids = np.asarray(track_id).astype(np.int64)
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    rows = counts[inverse.ravel()] >= min_hits  # only these hits are fitted (most hits of an event are singletons)
    x, y, z = (np.asarray(c, dtype=np.float64)[rows] for c in (x, y, z))
    uniq, group = np.unique(ids[rows], return_inverse=True)
    group, n_groups = group.ravel(), len(uniq)
    counts = np.bincount(group, minlength=n_groups)
    active = np.ones(len(group), dtype=bool)
    fit = fit_helices(x, y, z, group, active, n_groups)  # once, for the residuals and the parameters
    res_t, res_z = fit_tracks(x, y, z, group, active, n_groups, fit)
    params, _, determined = helix_parameters(x, y, z, group, active, n_groups, 1.0, 1.0, fit)
    pairs = np.unique(np.stack([group, np.asarray(layer).astype(np.int64)[rows]], 1), axis=0)
    n_layers = np.bincount(pairs[:, 0], minlength=n_groups)
    r = np.hypot(x, y)

    def rms(res: np.ndarray) -> np.ndarray:
        return np.sqrt(np.bincount(group, weights=res * res, minlength=n_groups) / np.maximum(counts, 1))

    columns = {
        "n_hits": counts, "n_layers": n_layers, "shared_layers": counts - n_layers,
        "log_rms_t": np.log1p(rms(res_t)), "log_rms_z": np.log1p(rms(res_z)),
        "log_max_t": np.log1p(segment_extreme(res_t, group, n_groups, True)),
        "log_max_z": np.log1p(segment_extreme(res_z, group, n_groups, True)),
        # κ (1/mm) = 1/R; pT = 0.3·B·R[m] GeV, so 1/pT = κ·1000 / (0.3·B)
        "inv_pt": np.abs(params[:, 1]) * 1000.0 / (0.3 * field_t),
        "abs_z0": np.abs(params[:, 2]), "abs_cot_theta": np.abs(params[:, 3]),
        "r_min": segment_extreme(r, group, n_groups, False), "r_max": segment_extreme(r, group, n_groups, True),
        "determined": determined.astype(np.float64),
    }
    return uniq, np.stack([columns[name] for name in FEATURES], 1).astype(np.float32).reshape(n_groups, len(FEATURES))
