"""The packed batch: several events' hits concatenated, with event offsets and per-hit targets.

All per-hit tensors are in the ORIGINAL hit order of the events (event after event, each event's hits in
the order of its ``hits`` table). ``sort_index`` gives the φ-sorted order the encoder's attention uses:
``x[sort_index]`` is sorted by φ within each event (events stay contiguous and in order), and
``y_sorted[unsort_index]`` brings a sorted tensor back to the original order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

#: The per-hit input fields of :class:`PackedBatch` (rows in original order; the others are per event, orders or truth).
HIT_FIELDS: tuple[str, ...] = ("features", "categories", "hit_ids", "phi", "eta")
#: The per-hit truth fields of :class:`PackedBatch` (None on a batch without truth).
TRUTH_FIELDS: tuple[str, ...] = ("particle_id", "pt", "p_eta", "momentum", "charge", "nhits", "vz")


@dataclass
class PackedBatch:
    """A varlen batch of E events with N hits in total.

    Attributes:
        features: (N, F) float32 normalised continuous hit features (see :mod:`trackformers.features`).
        categories: (N, 2) int64 (volume index, layer index) for embeddings.
        cu_seqlens: (E + 1,) int32 event offsets, ``cu_seqlens[0] == 0``.
        max_seqlen: the largest event length (Python int).
        sort_index: (N,) int64, sorted position → original position (φ-sorted within each event).
        unsort_index: (N,) int64, original position → sorted position (inverse of ``sort_index``).
        hit_ids: (N,) int64 hit ids as in the input tables.
        event_ids: (E,) int64.
        phi: (N,) float32 hit φ [rad] in (−π, π]; eta: (N,) float32 hit pseudorapidity.
        particle_id: (N,) int64 truth particle per hit, 0 = noise; None without truth.
        pt: (N,) float32 particle transverse momentum [GeV] (0 for noise).
        p_eta: (N,) float32 particle pseudorapidity (0 for noise).
        momentum: (N, 3) float32 particle momentum (px, py, pz) [GeV].
        charge: (N,) float32 particle charge [e] (0 for noise or unknown).
        nhits: (N,) int64 number of hits of the hit's particle in this (volume-selected) event.
        vz: (N,) float32 z [mm] of the hit's particle's production vertex (NaN when unknown, 0 for noise).
        events: the source :class:`~trackformers.events.Event` objects (for metrics), or None.
    """

    features: torch.Tensor
    categories: torch.Tensor
    cu_seqlens: torch.Tensor
    max_seqlen: int
    sort_index: torch.Tensor
    unsort_index: torch.Tensor
    hit_ids: torch.Tensor
    event_ids: torch.Tensor
    phi: torch.Tensor
    eta: torch.Tensor
    particle_id: torch.Tensor | None = None
    pt: torch.Tensor | None = None
    p_eta: torch.Tensor | None = None
    momentum: torch.Tensor | None = None
    charge: torch.Tensor | None = None
    nhits: torch.Tensor | None = None
    vz: torch.Tensor | None = None
    events: list[Any] | None = None

    @property
    def num_hits(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_events(self) -> int:
        return int(self.cu_seqlens.numel()) - 1

    @property
    def has_truth(self) -> bool:
        return self.particle_id is not None

    def bounds(self) -> list[tuple[int, int]]:
        """[(start, end)] hit ranges of each event."""
        cu = self.cu_seqlens.tolist()
        return list(zip(cu[:-1], cu[1:]))

    def event_index(self) -> torch.Tensor:
        """(N,) int64 event position (0..E−1) of each hit."""
        lengths = (self.cu_seqlens[1:] - self.cu_seqlens[:-1]).long()
        return torch.repeat_interleave(torch.arange(self.num_events, device=lengths.device), lengths)

    def reconstructable(self, *, pt_min: float = 0.9, eta_max: float = 4.0,
                        min_hits: int = 3) -> torch.Tensor:
        """(N,) bool: hit of a non-noise particle with pT ≥ pt_min [GeV], |η| < eta_max, ≥ min_hits hits."""
        if self.particle_id is None:
            raise ValueError("the batch has no truth")
        assert self.pt is not None and self.p_eta is not None and self.nhits is not None
        return ((self.particle_id != 0) & (self.pt >= pt_min) & (self.p_eta.abs() < eta_max)
                & (self.nhits >= min_hits))

    def select(self, keep: torch.Tensor) -> PackedBatch:
        """The batch with only the hits where ``keep`` ((N,) bool, original order) is True, on its device.

        Equal to packing the events cut down to those hits (:meth:`trackformers.filtering.HitFilter.subset`):
        each event keeps its kept hits in order, the φ order is the old one restricted to them, and ``nhits``
        counts a particle's kept hits. Events may end up empty; ``events`` is dropped (the objects no longer
        match the rows).
        """
        if keep.shape != (self.num_hits,) or keep.dtype != torch.bool:
            raise ValueError(f"keep must be a ({self.num_hits},) bool tensor; got {tuple(keep.shape)} {keep.dtype}")
        keep = keep.to(self.features.device)  # a mask from elsewhere: the result stays on the batch's device
        dev = keep.device
        rows = keep.nonzero().squeeze(1)
        new_pos = torch.cumsum(keep.long(), 0) - 1  # original row → its row in the selection
        counts = torch.zeros(self.num_events, dtype=torch.long, device=dev)
        counts.index_add_(0, self.event_index().to(dev)[rows], torch.ones_like(rows))
        cu = torch.zeros(self.num_events + 1, dtype=self.cu_seqlens.dtype, device=self.cu_seqlens.device)
        cu[1:] = torch.cumsum(counts, 0).to(cu)
        # the φ-sorted order stays sorted when rows are removed; events stay contiguous
        order = self.sort_index.to(dev)
        sort_index = new_pos[order[keep[order]]]
        unsort_index = torch.empty_like(sort_index)
        unsort_index[sort_index] = torch.arange(sort_index.numel(), device=dev)
        per_hit = {name: getattr(self, name)[rows] for name in (*HIT_FIELDS, *TRUTH_FIELDS)
                   if getattr(self, name) is not None}
        out = replace(self, **per_hit, cu_seqlens=cu, max_seqlen=int(counts.max()) if counts.numel() else 0,
                      sort_index=sort_index, unsort_index=unsort_index, events=None)
        if out.nhits is not None and out.particle_id is not None:  # a particle's hits among the kept ones
            ev = out.event_index().to(dev)
            key = torch.stack([ev, out.particle_id])
            _, inverse, n = torch.unique(key, dim=1, return_inverse=True, return_counts=True)
            out.nhits = torch.where(out.particle_id == 0, 0, n[inverse])
        return out

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> PackedBatch:
        """A copy with every tensor on ``device`` (events are kept as they are)."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                moved[f.name] = value.to(device, non_blocking=non_blocking)
        return replace(self, **moved)

    def pin_memory(self) -> PackedBatch:
        pinned = {f.name: getattr(self, f.name).pin_memory() for f in fields(self)
                  if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **pinned)
