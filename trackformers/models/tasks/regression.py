"""EncReg: per-hit track parameters of the hit's particle; tracks by clustering in parameter space.

Targets (from the truth momentum): η / 4, sin φ, cos φ and q/pT [1/GeV] scaled by ``qpt_scale``
(clipped to ±1 so that very soft particles do not dominate the MSE).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trackformers.batch import PackedBatch
from trackformers.losses import weighted_mse
from trackformers.models.tasks.base import Task, add_contrastive, cluster_per_event, mlp_head


def track_parameters(batch: PackedBatch, *, qpt_scale: float) -> torch.Tensor:
    """(N, 4) targets (η/4, sin φ, cos φ, clip(q/pT · qpt_scale, ±1)); zeros for noise."""
    assert batch.momentum is not None and batch.charge is not None and batch.pt is not None
    mom = batch.momentum.float()
    phi = torch.atan2(mom[:, 1], mom[:, 0])
    pt = batch.pt.float().clamp(min=1e-3)
    qpt = (batch.charge.float() / pt * qpt_scale).clamp(-1.0, 1.0)
    return torch.stack([batch.p_eta.float() / 4.0, torch.sin(phi), torch.cos(phi), qpt], 1)


class RegressionTask(Task):
    """Args:
    weights: MSE weight per parameter (η/4, sin φ, cos φ, q/pT).
    qpt_scale: GeV; q/pT is multiplied by it (0.9 GeV maps the reconstructable cut to ±1 … inside).
    min_pt: GeV, hits of particles below it are left out of the loss (curling tracks are unlearnable).
    contrastive_weight: > 0 adds the contrastive loss on the normalised parameters (combined training).
    cluster_scale: per-parameter factors applied before clustering.
    """

    default_clusterer = {"name": "dbscan", "eps": 0.05, "min_samples": 2}

    def __init__(
        self,
        d_model: int,
        weights: list[float] | None = None,
        qpt_scale: float = 0.9,
        min_pt: float = 0.0,
        contrastive_weight: float = 0.0,
        temperature: float = 0.1,
        window: int = 32,
        pt_min: float = 0.9,
        cluster_scale: list[float] | None = None,
        clusterer: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(d_model, pt_min=pt_min, clusterer=clusterer)
        self.head = mlp_head(d_model, 4)
        self.register_buffer("weights", torch.tensor(weights or [1.0, 1.0, 1.0, 1.0]), persistent=False)
        self.register_buffer(
            "cluster_scale", torch.tensor(cluster_scale or [1.0, 1.0, 1.0, 0.5]), persistent=False
        )
        self.qpt_scale, self.min_pt = qpt_scale, min_pt
        self.contrastive_weight, self.temperature, self.window = contrastive_weight, temperature, window

    def forward(self, h: torch.Tensor, batch: PackedBatch) -> dict[str, torch.Tensor]:
        return {"params": self.head(h).float()}

    def loss(self, outputs: dict[str, torch.Tensor], batch: PackedBatch) -> dict[str, torch.Tensor]:
        assert batch.particle_id is not None and batch.pt is not None
        mask = (batch.particle_id != 0) & (batch.pt >= self.min_pt)
        out = weighted_mse(
            pred=outputs["params"],
            target=track_parameters(batch, qpt_scale=self.qpt_scale),
            weight=self.weights,
            mask=mask,
        )
        if self.contrastive_weight > 0:
            emb = torch.nn.functional.normalize(outputs["params"] * self.cluster_scale, dim=-1)
            out = add_contrastive(out, emb, batch, self.labels(batch), weight=self.contrastive_weight,
                                  pt_min=self.pt_min, window=self.window, n_random=0,
                                  temperature=self.temperature)
        return out

    def tracks(
        self, outputs: dict[str, torch.Tensor], batch: PackedBatch, clusterer: Any = None
    ) -> torch.Tensor:
        return cluster_per_event(outputs["params"] * self.cluster_scale, batch, clusterer or self.clusterer())

    def metrics(self, outputs: dict[str, torch.Tensor], batch: PackedBatch) -> dict[str, float]:
        if batch.particle_id is None:
            return {}
        rec = batch.reconstructable(pt_min=self.pt_min)
        if not bool(rec.any()):
            return {}
        err = outputs["params"][rec] - track_parameters(batch, qpt_scale=self.qpt_scale)[rec]
        dphi = torch.atan2(outputs["params"][rec, 1], outputs["params"][rec, 2])
        tphi = torch.atan2(*track_parameters(batch, qpt_scale=self.qpt_scale)[rec, 1:3].unbind(1))
        wrapped = torch.remainder(dphi - tphi + math.pi, 2 * math.pi) - math.pi
        return {
            "eta_rmse": float(err[:, 0].square().mean().sqrt() * 4.0),
            "phi_rmse": float(wrapped.square().mean().sqrt()),
        }
