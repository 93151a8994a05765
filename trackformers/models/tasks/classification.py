"""EncCla: per-hit classes over bins of the particle's (φ, η, q/pT); tracks = hits sharing a class tuple.

Noise hits (and, when a batch is padded, padding rows) get target −1 and are masked out of the loss:
the anchors' implementation let padding enter the cross-entropy, which biases the classes towards
whatever the padding's logits were. Bin edges are hyper-parameters (plain floats): uniform by default,
or quantiles of a training sample passed in the config.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trackformers.batch import PackedBatch
from trackformers.losses import masked_cross_entropy
from trackformers.models.tasks.base import Task, mlp_head


def uniform_edges(low: float, high: float, bins: int) -> list[float]:
    return [low + (high - low) * i / bins for i in range(bins + 1)]


class ClassificationTask(Task):
    """Args:
    phi_edges / eta_edges / qpt_edges: increasing bin edges (φ in rad, η, q/pT in 1/GeV); values outside
        fall into the first / last bin. Defaults: 32 φ bins over (−π, π], 16 η bins over [−4, 4],
        8 q/pT bins over [−1/0.5, 1/0.5] GeV⁻¹ (0.5 GeV: softer particles share the end bins).
    min_pt: GeV, hits of softer particles are excluded from the loss (target −1), like noise.
    """

    def __init__(
        self,
        d_model: int,
        phi_edges: list[float] | None = None,
        eta_edges: list[float] | None = None,
        qpt_edges: list[float] | None = None,
        min_pt: float = 0.0,
        label_smoothing: float = 0.0,
        pt_min: float = 0.9,
        clusterer: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(d_model, pt_min=pt_min, clusterer=clusterer)
        edges = {
            "phi": phi_edges or uniform_edges(-math.pi, math.pi, 32),
            "eta": eta_edges or uniform_edges(-4.0, 4.0, 16),
            "qpt": qpt_edges or uniform_edges(-2.0, 2.0, 8),
        }
        for name, e in edges.items():
            if len(e) < 2 or any(b <= a for a, b in zip(e[:-1], e[1:])):
                raise ValueError(f"{name}_edges must be increasing with at least 2 values; got {e}")
            self.register_buffer(f"{name}_edges", torch.tensor(e, dtype=torch.float32), persistent=False)
        self.sizes = {name: len(e) - 1 for name, e in edges.items()}
        self.head = mlp_head(d_model, sum(self.sizes.values()))
        self.min_pt, self.label_smoothing = min_pt, label_smoothing

    def forward(self, h: torch.Tensor, batch: PackedBatch) -> dict[str, torch.Tensor]:
        logits = self.head(h).float()
        return dict(zip(self.sizes, logits.split(list(self.sizes.values()), dim=-1)))

    def targets(self, batch: PackedBatch) -> dict[str, torch.Tensor]:
        """(N,) int64 bin index per component; −1 for noise and for particles below ``min_pt``."""
        assert batch.momentum is not None and batch.particle_id is not None
        mom = batch.momentum.float()
        values = {
            "phi": torch.atan2(mom[:, 1], mom[:, 0]),
            "eta": batch.p_eta.float(),
            "qpt": batch.charge.float() / batch.pt.float().clamp(min=1e-3),
        }
        ignore = (batch.particle_id == 0) | (batch.pt < self.min_pt)
        out = {}
        for name, v in values.items():
            edges = getattr(self, f"{name}_edges")
            idx = (torch.bucketize(v, edges[1:-1].contiguous(), right=True)).clamp(0, self.sizes[name] - 1)
            out[name] = torch.where(ignore, torch.full_like(idx, -1), idx)
        return out

    def loss(
        self, outputs: dict[str, torch.Tensor], batch: PackedBatch, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Sum of the three masked cross-entropies; ``mask`` (N,) bool excludes padding rows as well."""
        targets = self.targets(batch)
        out: dict[str, torch.Tensor] = {}
        total = None
        for name in self.sizes:
            ce = masked_cross_entropy(
                logits=outputs[name], target=targets[name], mask=mask, label_smoothing=self.label_smoothing
            )
            total = ce["loss"] if total is None else total + ce["loss"]
            out[f"ce_{name}"] = ce["loss"].detach()
            out[f"acc_{name}"] = ce["accuracy"]
        out["loss"] = total
        return out

    def tracks(
        self, outputs: dict[str, torch.Tensor], batch: PackedBatch, clusterer: Any = None
    ) -> torch.Tensor:
        """Track id = the predicted (φ, η, q/pT) class tuple, renumbered per event."""
        code = torch.zeros_like(outputs["phi"][:, 0], dtype=torch.int64)
        for name, size in self.sizes.items():
            code = code * size + outputs[name].argmax(-1)
        out = torch.empty_like(code)
        for start, end in batch.bounds():
            if end > start:
                out[start:end] = torch.unique(code[start:end], return_inverse=True)[1]
        return out
