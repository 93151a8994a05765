"""Object condensation: β per hit plus cluster coordinates; tracks by condensation points."""

from __future__ import annotations

from typing import Any

import torch

from trackformers.batch import PackedBatch
from trackformers.losses import condensation_loss
from trackformers.models.tasks.base import Task, cluster_per_event, mlp_head


class CondensationTask(Task):
    """Args:
    dim: cluster-space dimension. q_min: minimal charge. noise_weight: s_B of the noise term.
    object_pt_min: GeV, particles below it are treated as noise (their β is pushed to 0); 0 keeps all.
    chunk: hits per checkpointed chunk in the loss.
    clusterer: default ``{"name": "condensation", "t_beta": 0.5, "t_d": 0.5}``.
    """

    default_clusterer = {"name": "condensation", "t_beta": 0.5, "t_d": 0.5}

    def __init__(
        self,
        d_model: int,
        dim: int = 8,
        q_min: float = 0.1,
        noise_weight: float = 1.0,
        object_pt_min: float = 0.0,
        chunk: int = 4096,
        pt_min: float = 0.9,
        clusterer: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(d_model, pt_min=pt_min, clusterer=clusterer)
        self.head = mlp_head(d_model, dim + 1)
        self.q_min, self.noise_weight, self.object_pt_min, self.chunk = (
            q_min,
            noise_weight,
            object_pt_min,
            chunk,
        )

    def forward(self, h: torch.Tensor, batch: PackedBatch) -> dict[str, torch.Tensor]:
        out = self.head(h).float()
        # β < 1 strictly: q = arctanh²β must stay finite (the loss clamps too).
        return {"beta": torch.sigmoid(out[:, 0]) * (1 - 1e-4), "coords": out[:, 1:]}

    def loss(self, outputs: dict[str, torch.Tensor], batch: PackedBatch) -> dict[str, torch.Tensor]:
        labels = self.labels(batch)
        if self.object_pt_min > 0:
            labels = torch.where(batch.pt >= self.object_pt_min, labels, torch.full_like(labels, -1))
        return condensation_loss(
            beta=outputs["beta"],
            coords=outputs["coords"],
            labels=labels,
            cu_seqlens=batch.cu_seqlens,
            q_min=self.q_min,
            noise_weight=self.noise_weight,
            chunk=self.chunk,
        )

    def tracks(
        self, outputs: dict[str, torch.Tensor], batch: PackedBatch, clusterer: Any = None
    ) -> torch.Tensor:
        return cluster_per_event(
            outputs["coords"], batch, clusterer or self.clusterer(), beta=outputs["beta"]
        )
