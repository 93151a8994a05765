"""What every head shares: the Task interface, clusterer construction and per-event track building.

A task is an ``nn.Module`` on top of the encoder's hidden states ``h`` (N, d_model), hits in the batch's
original order:

- ``forward(h, batch) -> dict[str, Tensor]``: per-hit outputs (embedding, params, logits, β, ...);
- ``loss(outputs, batch) -> dict[str, Tensor]``: ``"loss"`` plus detached components;
- ``tracks(outputs, batch, clusterer=None) -> Tensor (N,) int64``: track ids, unique within each event;
- ``metrics(outputs, batch) -> dict[str, float]``: optional head-specific diagnostics (validation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trackformers.batch import PackedBatch
from trackformers.losses import (
    contrastive_loss,
    particle_labels,
    particle_partners,
    random_partners,
    window_neighbours,
)
from trackformers.models.slicing import sliced_segments


def make_clusterer(spec: dict[str, Any] | None, default: dict[str, Any]) -> Any:
    """A clusterer from ``{"name": ..., **params}`` via :func:`trackformers.clustering.make_clusterer`."""
    spec = dict(default if spec is None else spec)
    name = spec.pop("name")
    from trackformers.clustering import make_clusterer as _make

    return _make(name, **spec)


def cluster_per_event(
    x: torch.Tensor,
    batch: PackedBatch,
    clusterer: Any,
    beta: torch.Tensor | None = None,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N,) int64 track ids from running ``clusterer`` on each event's rows of ``x`` (N, D) separately.

    ``keep`` (N,) bool: only those hits are clustered; the others get singleton ids.
    A clusterer with ``uses_phi = True`` (the windowed GPU one) also gets each hit's ``phi`` [rad].
    """
    out = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    x = x.detach().float()
    for start, end in batch.bounds():
        if end == start:
            continue
        sl = slice(start, end)
        phi = {"phi": batch.phi[sl]} if getattr(clusterer, "uses_phi", False) else {}
        if keep is None:
            out[sl] = clusterer(x[sl], beta=None if beta is None else beta[sl].detach().float(), **phi)
            continue
        k = keep[sl]
        ids = torch.arange(end - start, device=x.device, dtype=torch.int64)  # singletons by default
        if bool(k.any()):
            phi = {"phi": phi["phi"][k]} if phi else {}
            sub = clusterer(x[sl][k], beta=None if beta is None else beta[sl][k].detach().float(), **phi)
            ids = ids + int(sub.max()) + 1 if sub.numel() else ids
            ids[k] = sub
        out[sl] = ids
    return out


class Task(nn.Module):
    """Base head. ``pt_min`` [GeV] is the reconstructable-particle cut used for anchors / objects."""

    default_clusterer: dict[str, Any] = {"name": "dbscan", "eps": 0.2, "min_samples": 2}

    def __init__(self, d_model: int, *, pt_min: float = 0.9, clusterer: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.d_model = d_model
        self.pt_min = pt_min
        self.clusterer_spec = clusterer

    def clusterer(self, spec: dict[str, Any] | None = None) -> Any:
        return make_clusterer(spec if spec is not None else self.clusterer_spec, self.default_clusterer)

    def forward(self, h: torch.Tensor, batch: PackedBatch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, outputs: dict[str, torch.Tensor], batch: PackedBatch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def tracks(
        self, outputs: dict[str, torch.Tensor], batch: PackedBatch, clusterer: Any = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self, outputs: dict[str, torch.Tensor], batch: PackedBatch) -> dict[str, float]:
        return {}

    def labels(self, batch: PackedBatch) -> torch.Tensor:
        """(N,) dense particle labels (−1 noise), unique per (event, particle)."""
        assert batch.particle_id is not None
        return particle_labels(particle_id=batch.particle_id, event_index=batch.event_index())


def mlp_head(d_in: int, d_out: int, hidden: int | None = None) -> nn.Sequential:
    hidden = hidden or d_in
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


def contrastive_terms(
    embedding: torch.Tensor,
    batch: PackedBatch,
    labels: torch.Tensor,
    *,
    pt_min: float,
    window: int,
    n_random: int,
    max_partners: int,
    temperature: float,
    anchors: torch.Tensor | None = None,
    eta_slices: int = 0,
) -> dict[str, torch.Tensor]:
    """The contrastive loss with partners = own particle's hits, φ-window neighbours and random hits.

    Anchors: hits of reconstructable particles (pT ≥ pt_min [GeV], |η| < 4, ≥ 3 hits) unless given.
    ``eta_slices`` > 0 takes the ±window neighbours in (event, η-slice, φ) order
    (:mod:`trackformers.models.slicing`): harder negatives, near in η as well as in φ.
    """
    if anchors is None:
        anchors = batch.reconstructable(pt_min=pt_min)
    pos = particle_partners(labels=labels, max_partners=max_partners)
    sort_index, cu = batch.sort_index, batch.cu_seqlens
    if eta_slices > 0:
        sort_index, cu = sliced_segments(batch.phi, batch.eta, batch.cu_seqlens, slices=eta_slices, parity=0)
    neg = [window_neighbours(sort_index=sort_index, cu_seqlens=cu, window=window)]
    if n_random > 0:
        neg.append(random_partners(cu_seqlens=batch.cu_seqlens, k=n_random).to(labels.device))
    return contrastive_loss(
        embeddings=embedding,
        labels=labels,
        anchors=anchors,
        positives=pos,
        negatives=torch.cat(neg, 1),
        temperature=temperature,
    )


def add_contrastive(out: dict[str, torch.Tensor], embedding: torch.Tensor, batch: PackedBatch,
                    labels: torch.Tensor, *, weight: float, pt_min: float, window: int, n_random: int,
                    temperature: float) -> dict[str, torch.Tensor]:
    """``out`` with the contrastive loss added to ``out["loss"]`` (× ``weight``) and logged as ``contrastive``:
    the auxiliary term of heads whose main loss is per hit (regression, hit filter)."""
    c = contrastive_terms(embedding, batch, labels, pt_min=pt_min, window=window, n_random=n_random,
                          max_partners=16, temperature=temperature)
    out["contrastive"] = c["loss"].detach()
    out["loss"] = out["loss"] + weight * c["loss"]
    return out
