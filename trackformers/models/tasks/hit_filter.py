"""Hit filter: per-hit keep probability (noise and soft-particle hits out), optionally with an embedding.

With ``dim > 0`` the head is a two-stage tracker in one model: hits whose keep probability passes
``threshold`` are clustered in a contrastively trained embedding, the others get singleton track ids.
With ``dim = 0`` it is a pure filter: every hit is its own track (only the filter metrics mean anything).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from trackformers.batch import PackedBatch
from trackformers.losses import masked_bce
from trackformers.models.tasks.base import Task, add_contrastive, cluster_per_event, mlp_head


class HitFilterTask(Task):
    """Args:
    keep_pt_min: GeV, target = 1 for hits of particles with pT ≥ it (noise: 0).
    pos_weight: BCE weight of the kept class. threshold: keep probability cut for tracking.
    dim: embedding dimension (0 = filter only). contrastive_weight: weight of the embedding loss.
    vertex_z: z positions (mm) of the vertex hypotheses that two-stage reconstruction
    (:class:`trackformers.filtering.HitFilter`) runs the filter for by default, one pass each; None = (0.0,).
    keep_vz_window: mm; when set, the target also needs the particle's production vertex within
    |vz| ≤ keep_vz_window of the origin (a vertex the particles table does not give counts as inside), so
    that each vertex-hypothesis pass, run on the event moved by −z_v, has one job: the tracks from near z_v.
    """

    default_clusterer = {"name": "dbscan", "eps": 0.25, "min_samples": 2}

    def __init__(
        self,
        d_model: int,
        keep_pt_min: float = 0.5,
        pos_weight: float = 1.0,
        threshold: float = 0.5,
        dim: int = 16,
        contrastive_weight: float = 1.0,
        temperature: float = 0.1,
        window: int = 32,
        n_random: int = 16,
        pt_min: float = 0.9,
        clusterer: dict[str, Any] | None = None,
        vertex_z: list[float] | None = None,
        keep_vz_window: float | None = None,
    ) -> None:
        super().__init__(d_model, pt_min=pt_min, clusterer=clusterer)
        if keep_vz_window is not None and not keep_vz_window > 0:
            raise ValueError(f"keep_vz_window = {keep_vz_window} mm; expected a positive window or None.")
        self.keep_vz_window = keep_vz_window
        self.vertex_z = tuple(float(z) for z in vertex_z) if vertex_z else (0.0,)
        self.head = mlp_head(d_model, 1 + dim)
        self.dim, self.keep_pt_min, self.pos_weight, self.threshold = dim, keep_pt_min, pos_weight, threshold
        self.contrastive_weight, self.temperature, self.window, self.n_random = (
            contrastive_weight,
            temperature,
            window,
            n_random,
        )

    def forward(self, h: torch.Tensor, batch: PackedBatch) -> dict[str, torch.Tensor]:
        out = self.head(h).float()
        res = {"keep_logit": out[:, 0]}
        if self.dim:
            res["embedding"] = F.normalize(out[:, 1:], dim=-1)
        return res

    def target(self, batch: PackedBatch) -> torch.Tensor:
        """(N,) float32 1 for hits of a particle with pT ≥ keep_pt_min (and, with keep_vz_window, a production
        vertex within the window along the beam), else 0 (noise: 0)."""
        assert batch.particle_id is not None and batch.pt is not None
        keep = (batch.particle_id != 0) & (batch.pt >= self.keep_pt_min)
        if self.keep_vz_window is not None:
            if batch.vz is None:
                raise ValueError("keep_vz_window needs the particles' vertices (batch.vz); this batch has none.")
            # NaN (vertex unknown) fails both comparisons below, so it counts as inside
            keep &= ~(batch.vz.abs() > self.keep_vz_window)
        return keep.float()

    def loss(self, outputs: dict[str, torch.Tensor], batch: PackedBatch) -> dict[str, torch.Tensor]:
        out = masked_bce(logits=outputs["keep_logit"], target=self.target(batch), pos_weight=self.pos_weight)
        out["bce"] = out["loss"].detach()
        if self.dim and self.contrastive_weight > 0:
            out = add_contrastive(out, outputs["embedding"], batch, self.labels(batch), weight=self.contrastive_weight,
                                  pt_min=self.pt_min, window=self.window, n_random=self.n_random,
                                  temperature=self.temperature)
        return out

    def tracks(
        self, outputs: dict[str, torch.Tensor], batch: PackedBatch, clusterer: Any = None
    ) -> torch.Tensor:
        keep = torch.sigmoid(outputs["keep_logit"]) >= self.threshold
        if not self.dim:
            out = torch.empty(keep.shape[0], dtype=torch.int64, device=keep.device)
            for start, end in batch.bounds():
                out[start:end] = torch.arange(end - start, device=keep.device)
            return out
        return cluster_per_event(outputs["embedding"], batch, clusterer or self.clusterer(), keep=keep)

    def metrics(self, outputs: dict[str, torch.Tensor], batch: PackedBatch) -> dict[str, float]:
        if batch.particle_id is None:
            return {}
        keep = torch.sigmoid(outputs["keep_logit"]) >= self.threshold
        t = self.target(batch).bool()
        eff = (keep & t).sum() / t.sum().clamp(min=1)
        pur = (keep & t).sum() / keep.sum().clamp(min=1)
        return {"filter_efficiency": float(eff), "filter_purity": float(pur)}
