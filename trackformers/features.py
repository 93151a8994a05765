"""Per-hit features, per-hit targets and the packing of events into a φ-sorted varlen batch.

Continuous features (in this column order, each divided by a normalisation constant of
:class:`FeatureConfig`, constants that are saved with the model's hyper-parameters):

    r [mm], cos φ, sin φ, z [mm], η, u = x/r² [1/mm], v = y/r² [1/mm]  (+ log(1 + n_cells), log(1 + Σ charge))

u, v are the conformal coordinates: a helix from the beam line is a straight line in (u, v), so they are
cheap, informative inputs for tracks. Categorical ids (volume, layer) go to embeddings in the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch

from trackformers.batch import PackedBatch

#: Volume ids embed into this many rows (TrackML ids are 7..18); larger ids share the last row.
NUM_VOLUMES = 32
#: Layer index = layer_id // 2 (TrackML layer ids are even, 2..14); larger indices share the last row.
NUM_LAYERS = 16


@dataclass(frozen=True)
class FeatureConfig:
    """Normalisation constants (plain floats, stored in the checkpoint) and which optional features to use.

    Attributes:
        r_scale: mm; TrackML's outermost strip layer is at r ≈ 1 m.
        z_scale: mm; the TrackML endcaps end at |z| ≈ 3 m.
        eta_scale: hit pseudorapidity divided by this (the detector covers |η| < 4).
        uv_scale: mm; u, v are multiplied by it (the innermost pixel layer is at r ≈ 32 mm, so |u| ≲ 1).
        use_cells: add two cell features (zeros when an event has no cells table).
    """

    r_scale: float = 1000.0
    z_scale: float = 3000.0
    eta_scale: float = 4.0
    uv_scale: float = 30.0
    use_cells: bool = False

    @property
    def num_features(self) -> int:
        return 7 + (2 if self.use_cells else 0)

    def to_dict(self) -> dict[str, float | bool]:
        return asdict(self)


def hit_geometry(hits: pd.DataFrame) -> dict[str, np.ndarray]:
    """r [mm], φ [rad] in (−π, π], z [mm], η and conformal u, v [1/mm] of a hits table (float64 arrays)."""
    x = hits["x"].to_numpy(np.float64)
    y = hits["y"].to_numpy(np.float64)
    z = hits["z"].to_numpy(np.float64)
    r2 = x * x + y * y
    r = np.sqrt(r2)
    phi = np.arctan2(y, x)
    # η = asinh(z / r); a hit on the beam line (r = 0) gets the limiting value for its sign of z.
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(r > 0, np.arcsinh(z / np.where(r > 0, r, 1.0)), np.sign(z) * 10.0)
        inv = np.where(r2 > 0, 1.0 / np.where(r2 > 0, r2, 1.0), 0.0)
    return {"r": r, "phi": phi, "z": z, "eta": eta, "u": x * inv, "v": y * inv}


def moved_along_beam(batch: PackedBatch, dz: float, config: FeatureConfig | None = None) -> PackedBatch:
    """``batch`` (packed with ``config``) as if every hit had moved by ``dz`` mm along the beam (z + dz).

    Only the z-dependent parts change: the z and η feature columns and ``batch.eta``; r, φ, u, v, the cells'
    columns and the φ order do not depend on z. The truth vertex ``batch.vz`` moves with the hits. Equal (to
    float32 rounding) to packing the moved event again, at a fraction of the cost; tensors stay on the batch's
    device. The batch itself is not modified.
    """
    config = config or FeatureConfig()
    if dz == 0.0:
        return batch
    f = batch.features
    r = f[:, 0].double() * config.r_scale
    z = f[:, 3].double() * config.z_scale + dz
    # as hit_geometry: η = asinh(z / r), and the limiting ±10 for a hit on the beam line
    eta = torch.where(r > 0, torch.asinh(z / torch.where(r > 0, r, torch.ones_like(r))), torch.sign(z) * 10.0)
    features = f.clone()
    features[:, 3] = (z / config.z_scale).to(f.dtype)
    features[:, 4] = (eta / config.eta_scale).to(f.dtype)
    vz = None if batch.vz is None else batch.vz + dz  # noise rows move too: the target ignores them
    return replace(batch, features=features, eta=eta.to(batch.eta.dtype), vz=vz)


def cell_features(hits: pd.DataFrame, cells: pd.DataFrame | None) -> np.ndarray:
    """(N, 2) float32: log(1 + number of cells), log(1 + summed cell charge) per hit; zeros without cells."""
    out = np.zeros((len(hits), 2), dtype=np.float32)
    if cells is None or len(cells) == 0:
        return out
    agg = cells.groupby("hit_id")["value"].agg(["size", "sum"])
    agg = agg.reindex(hits["hit_id"].to_numpy()).fillna(0.0)
    out[:, 0] = np.log1p(agg["size"].to_numpy(np.float64))
    out[:, 1] = np.log1p(np.clip(agg["sum"].to_numpy(np.float64), 0, None))
    return out


def hit_features(event, config: FeatureConfig | None = None,  # noqa: ANN001 - Event
                 geometry: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """(N, F) float32 normalised features of ``event``'s hits, in the hits table's order (``geometry``: the
    hits' :func:`hit_geometry` when the caller has it already)."""
    config = config or FeatureConfig()
    g = hit_geometry(event.hits) if geometry is None else geometry
    cols = [
        g["r"] / config.r_scale,
        np.cos(g["phi"]),
        np.sin(g["phi"]),
        g["z"] / config.z_scale,
        g["eta"] / config.eta_scale,
        g["u"] * config.uv_scale,
        g["v"] * config.uv_scale,
    ]
    out = np.stack(cols, 1).astype(np.float32) if len(event.hits) else np.zeros((0, 7), np.float32)
    if config.use_cells:
        out = np.concatenate([out, cell_features(event.hits, getattr(event, "cells", None))], 1)
    return out


def hit_categories(hits: pd.DataFrame) -> np.ndarray:
    """(N, 2) int64 (volume index, layer index) clipped to the embedding tables' sizes."""
    vol = np.clip(hits["volume_id"].to_numpy(np.int64), 0, NUM_VOLUMES - 1)
    lay = np.clip(hits["layer_id"].to_numpy(np.int64) // 2, 0, NUM_LAYERS - 1)
    return np.stack([vol, lay], 1) if len(hits) else np.zeros((0, 2), np.int64)


def hit_targets(event) -> dict[str, np.ndarray] | None:  # noqa: ANN001 - Event
    """Per-hit truth targets in the hits table's order, or None when the event has no truth.

    particle_id int64 (0 = noise or hit without truth row); pt [GeV], p_eta, momentum (px, py, pz) [GeV] and
    charge [e] of the hit's particle (taken from the particles table when present, else from the truth
    momentum at the hit; charge 0 when unknown); nhits = hits of that particle in this event; vz [mm] = z of
    its production vertex from the particles table (NaN when the table has no row for it, 0 for noise).
    All float arrays are float32.
    """
    if event.truth is None:
        return None
    hits = event.hits
    # Row lookup by hit_id with get_indexer: reindex would turn int64 ids into float for missing rows.
    row = pd.Index(event.truth["hit_id"].to_numpy()).get_indexer(hits["hit_id"].to_numpy())
    has = row >= 0
    pid = np.zeros(len(hits), np.int64)
    pid[has] = event.truth["particle_id"].to_numpy(np.int64)[row[has]]
    mom = np.zeros((len(hits), 3), np.float64)
    mom[has] = event.truth[["tpx", "tpy", "tpz"]].to_numpy(np.float64)[row[has]]
    charge = np.zeros(len(hits), np.float64)
    vz = np.full(len(hits), np.nan)
    parts = event.particles
    if parts is not None and len(parts):
        p = parts.set_index("particle_id")
        prow = p.index.get_indexer(pid)
        known = prow >= 0
        mom[known] = p[["px", "py", "pz"]].to_numpy(np.float64)[prow[known]]
        charge[known] = p["q"].to_numpy(np.float64)[prow[known]]
        vz[known] = p["vz"].to_numpy(np.float64)[prow[known]]
    noise = pid == 0
    mom[noise] = 0.0
    vz[noise] = 0.0
    pt = np.hypot(mom[:, 0], mom[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        p_eta = np.where(pt > 0, np.arcsinh(mom[:, 2] / np.where(pt > 0, pt, 1.0)), 0.0)
    _, inverse, counts = np.unique(pid, return_inverse=True, return_counts=True)
    nhits = np.where(noise, 0, counts[inverse]).astype(np.int64)
    return {"particle_id": pid, "pt": pt.astype(np.float32), "p_eta": p_eta.astype(np.float32),
            "momentum": mom.astype(np.float32), "charge": charge.astype(np.float32), "nhits": nhits,
            "vz": vz.astype(np.float32)}


def phi_sort(phi: torch.Tensor, cu_seqlens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(perm, inverse): ``x[perm]`` is φ-sorted within each event (:func:`trackformers.attention.sorting.phi_sort`)."""
    from trackformers.attention.sorting import phi_sort as _phi_sort

    return _phi_sort(phi, cu_seqlens)


def pack_events(events: Sequence, config: FeatureConfig | None = None, *,  # noqa: ANN001
                keep_events: bool = False, targets: bool = True) -> PackedBatch:
    """Concatenate events into one :class:`PackedBatch` (features, targets, φ-sort permutation).

    Targets are filled only when every event has truth and ``targets`` is True (inference passes False:
    it needs no truth, whose lookup is about a third of the packing time). ``keep_events`` keeps the Event
    objects on the batch (validation needs them for the metrics).
    """
    config = config or FeatureConfig()
    want_targets = targets
    feats, cats, hit_ids, phis, etas, lengths, targets = [], [], [], [], [], [], []
    for event in events:
        g = hit_geometry(event.hits)
        feats.append(hit_features(event, config, g))
        cats.append(hit_categories(event.hits))
        hit_ids.append(event.hits["hit_id"].to_numpy(np.int64))
        phis.append(g["phi"].astype(np.float32))
        etas.append(g["eta"].astype(np.float32))
        lengths.append(len(event.hits))
        targets.append(hit_targets(event) if want_targets else None)
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.as_tensor(lengths, dtype=torch.int64), 0).to(torch.int32)
    n_feat = config.num_features

    def cat(arrays: list[np.ndarray], shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(arrays, 0) if arrays else np.zeros(shape, dtype))

    phi = cat(phis, (0,), np.float32)
    # Per-event stable argsort in numpy: the same permutation as phi_sort, without a global two-pass torch sort
    # (which dominated packing time on the CPU data workers).
    offsets = np.cumsum([0, *lengths[:-1]]) if lengths else []
    order = [off + np.argsort(p, kind="stable") for off, p in zip(offsets, phis)]
    perm = torch.from_numpy(np.concatenate(order).astype(np.int64) if order else np.zeros(0, np.int64))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    batch = PackedBatch(
        features=cat(feats, (0, n_feat), np.float32), categories=cat(cats, (0, 2), np.int64),
        cu_seqlens=cu, max_seqlen=max(lengths, default=0), sort_index=perm, unsort_index=inverse,
        hit_ids=cat(hit_ids, (0,), np.int64),
        event_ids=torch.as_tensor([int(e.event_id) for e in events], dtype=torch.int64),
        phi=phi, eta=cat(etas, (0,), np.float32), events=list(events) if keep_events else None,
    )
    if targets and all(t is not None for t in targets):
        batch.particle_id = torch.from_numpy(np.concatenate([t["particle_id"] for t in targets]))
        batch.pt = torch.from_numpy(np.concatenate([t["pt"] for t in targets]))
        batch.p_eta = torch.from_numpy(np.concatenate([t["p_eta"] for t in targets]))
        batch.momentum = torch.from_numpy(np.concatenate([t["momentum"] for t in targets]))
        batch.charge = torch.from_numpy(np.concatenate([t["charge"] for t in targets]))
        batch.nhits = torch.from_numpy(np.concatenate([t["nhits"] for t in targets]))
        batch.vz = torch.from_numpy(np.concatenate([t["vz"] for t in targets]))
    return batch
