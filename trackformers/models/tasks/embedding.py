"""Metric learning: a unit-norm per-hit embedding trained with the contrastive loss; tracks by clustering."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from trackformers.batch import PackedBatch
from trackformers.models.tasks.base import Task, cluster_per_event, contrastive_terms, mlp_head


class EmbeddingTask(Task):
    """Per-hit embedding on the unit sphere of R^dim.

    Args:
        d_model: encoder width. dim: embedding dimension (8–32).
        temperature: contrastive softmax temperature.
        window: φ-sorted neighbours on each side used as (hard) negatives.
        n_random: random hits of the event added as negatives.
        max_partners: at most this many same-particle positives per anchor.
        pt_min: GeV, anchors are hits of particles above it (the reconstructable cut, 0.9 GeV in TrackML).
        neg_eta_slices: > 0 takes the φ-neighbour negatives within η-slices (harder negatives).
        clusterer: ``{"name": "dbscan", "eps": ..., "min_samples": ...}`` (any registered clusterer).
    """

    default_clusterer = {"name": "dbscan", "eps": 0.25, "min_samples": 2}

    def __init__(
        self,
        d_model: int,
        dim: int = 16,
        temperature: float = 0.1,
        window: int = 32,
        n_random: int = 16,
        max_partners: int = 16,
        pt_min: float = 0.9,
        clusterer: dict[str, Any] | None = None,
        neg_eta_slices: int = 0,
    ) -> None:
        super().__init__(d_model, pt_min=pt_min, clusterer=clusterer)
        self.head = mlp_head(d_model, dim)
        self.temperature, self.window, self.n_random, self.max_partners = (
            temperature,
            window,
            n_random,
            max_partners,
        )
        self.neg_eta_slices = neg_eta_slices

    def forward(self, h: torch.Tensor, batch: PackedBatch) -> dict[str, torch.Tensor]:
        return {"embedding": F.normalize(self.head(h).float(), dim=-1)}

    def loss(self, outputs: dict[str, torch.Tensor], batch: PackedBatch) -> dict[str, torch.Tensor]:
        return contrastive_terms(
            outputs["embedding"],
            batch,
            self.labels(batch),
            pt_min=self.pt_min,
            window=self.window,
            n_random=self.n_random,
            max_partners=self.max_partners,
            temperature=self.temperature,
            eta_slices=self.neg_eta_slices,
        )

    def tracks(
        self, outputs: dict[str, torch.Tensor], batch: PackedBatch, clusterer: Any = None
    ) -> torch.Tensor:
        return cluster_per_event(outputs["embedding"], batch, clusterer or self.clusterer())
