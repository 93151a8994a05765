"""Inference forward replayed from CUDA graphs: fewer host launches for the model of a single event.

An eager forward of the encoder + head issues a few hundred small kernels; at μ = 200 (57k hits) the host
launches them slower than the GPU runs them. :class:`GraphedForward` captures ``module(batch)`` once per
*length bucket* and replays it: the event's hits are copied into static buffers padded to the bucket length
(``bucket_length``, ≤ 1/8 extra), the padding being a second event of the packed batch (attention never
crosses events; every other layer works per hit, so padding cannot change the real hits' outputs except by
floating-point rounding of differently shaped matrix products). Outputs are the first N rows, copied out.

η-sliced encoders (``eta_slices > 0``) compute their (event, η-slice, φ) orders eagerly each call (they need
host values: segment lengths) and feed them to the graph through static buffers.

It runs only where it can: CUDA tensors, one event per batch, an encoder whose forward can be captured. Otherwise
(or when capture fails, or the first replay disagrees with the eager forward) it runs the module eagerly and
says why once (``reason`` and a log warning). Inference only: no autograd state is kept.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor

from trackformers.batch import PackedBatch

log = logging.getLogger(__name__)

#: Per-hit fields of a PackedBatch that are padded (the others are per event or truth).
HIT_FIELDS: tuple[str, ...] = ("features", "categories", "hit_ids", "phi", "eta")


def bucket_length(n: int, min_granule: int = 1024) -> int:
    """Padded length for ``n`` hits: n rounded up to a multiple of max(min_granule, 2^(⌊log2 n⌋ − 3)).

    So a bucket wastes at most 1/8 of the event and there are at most 8 buckets per octave of sizes.
    """
    granule = max(min_granule, 1 << max(0, n.bit_length() - 4))
    return max(granule, -(-n // granule) * granule)


def pad_batch(batch: PackedBatch, length: int) -> PackedBatch:
    """A one-event batch of ``n`` hits → a two-event batch of ``length`` rows (the second event padding).

    Padding rows have zero features, phi, eta and categories, hit id −1, and stay in place in the φ order.
    Truth fields are dropped. ``length >= n``; a padding event of zero hits is allowed.
    """
    n = batch.num_hits
    if batch.num_events != 1 or length < n:
        raise ValueError(f"pad_batch needs one event of at most {length} hits; got {batch.num_events} events, "
                         f"{n} hits")
    dev = batch.features.device
    pad = length - n
    rows: dict[str, Tensor] = {}
    for name in HIT_FIELDS:
        t = getattr(batch, name)
        fill = -1 if name == "hit_ids" else 0
        rows[name] = torch.cat([t, t.new_full((pad, *t.shape[1:]), fill)])
    tail = torch.arange(n, length, device=dev, dtype=batch.sort_index.dtype)
    cu = torch.tensor([0, n, length], dtype=batch.cu_seqlens.dtype, device=batch.cu_seqlens.device)
    truth = {f.name: None for f in fields(batch) if f.name in
             ("particle_id", "pt", "p_eta", "momentum", "charge", "nhits")}
    return replace(batch, **rows, **truth, sort_index=torch.cat([batch.sort_index.to(dev), tail]),
                   unsort_index=torch.cat([batch.unsort_index.to(dev), tail]), cu_seqlens=cu,
                   max_seqlen=max(n, pad), event_ids=torch.cat([batch.event_ids, batch.event_ids.new_full((1,), -1)]),
                   events=None)


@dataclass
class _Entry:
    """One captured graph: its static input batch, sliced-order buffers, outputs."""

    graph: Any
    batch: PackedBatch
    orders: list[Any]
    outputs: dict[str, Tensor]


class GraphedForward:
    """``forward(batch) -> outputs`` like ``module(batch)``, replayed from CUDA graphs where possible.

    Args:
        module: a TrackingModule (``module.encoder``, ``module(batch)``), on its device, in eval mode.
        max_graphs: graphs kept (least recently used dropped); each holds its static buffers.
        check: compare each new graph's first replay with the eager forward and fall back if they differ
            beyond bf16 rounding (max |Δ| > ``0.1`` or mean |Δ| > ``0.01`` on any output).
        reuse_slack: an event of n hits replays an existing graph of length L if n ≤ L ≤ n·(1 + slack)
            (the smallest such), so events of similar size share one graph instead of one per bucket.
        headroom: a new graph is captured for ``bucket_length(n·(1 + headroom))`` rows, so that it also
            serves somewhat larger later events. Fewer graphs hold less memory: every graph keeps its own
            blocks of the shared pool that differently sized later captures cannot reuse.
    """

    def __init__(self, module: Any, *, max_graphs: int = 4, check: bool = True, reuse_slack: float = 0.0,
                 headroom: float = 0.0) -> None:
        if not (0.0 <= reuse_slack <= 1.0 and 0.0 <= headroom <= 1.0):
            raise ValueError(f"reuse_slack and headroom must lie in [0, 1]; got {reuse_slack}, {headroom}")
        self.module = module
        self.max_graphs = max_graphs
        self.check = check
        self.reuse_slack = reuse_slack
        self.headroom = headroom
        self.graphs: OrderedDict[tuple, _Entry] = OrderedDict()
        self.failed: dict[tuple, str] = {}
        self.reason: str | None = None  # why the last call ran eagerly (None: it replayed a graph)
        self._warned: set[str] = set()
        self._pool: Any = None
        self._stream: Any = None

    # ------------------------------------------------------------------ eligibility
    def why_not(self, batch: PackedBatch) -> str | None:
        """None if this batch can replay a graph, else one sentence saying why not."""
        if batch.features.device.type != "cuda":
            return f"CUDA graphs need a CUDA device; the batch is on {batch.features.device}"
        if batch.num_events != 1:
            return f"CUDA graphs run one event per batch; this batch has {batch.num_events}"
        if batch.num_hits == 0:
            return "the event has no hits"
        if torch.is_grad_enabled():
            return "CUDA graphs are for inference only; run under torch.no_grad()"
        return None

    def _eager(self, batch: PackedBatch, reason: str) -> dict[str, Tensor]:
        self.reason = reason
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning("CUDA graphs off for this call, running eagerly: %s", reason)
        return self.module(batch)

    # ------------------------------------------------------------------ call
    def __call__(self, batch: PackedBatch) -> dict[str, Tensor]:
        reason = self.why_not(batch)
        if reason is not None:
            return self._eager(batch, reason)
        for length in self.lengths(batch.num_hits):  # existing graphs first, a new bucket last
            padded = pad_batch(batch, length)
            orders = self._orders(padded)
            key = self._key(padded, orders)
            if key in self.graphs:
                break
        if key in self.failed:
            return self._eager(batch, self.failed[key])
        entry = self.graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(padded, orders)
            except Exception as err:  # noqa: BLE001 - any capture failure means: run this bucket eagerly
                torch.cuda.synchronize()
                first = (str(err).splitlines() or [""])[0][:200]
                self.failed[key] = f"capture failed ({type(err).__name__}: {first})"
                return self._eager(batch, self.failed[key])
            self.graphs[key] = entry
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
            out = self._replay(entry, padded, orders, batch.num_hits)
            if self.check:
                bad = _disagreement(out, self.module(batch))
                if bad is not None:
                    del self.graphs[key]
                    self.failed[key] = f"the replayed graph disagrees with the eager forward ({bad})"
                    return self._eager(batch, self.failed[key])
            # Hand back what the warm-up (side stream) and the eager check left in the allocator's cache: it
            # is never reused by replays. At μ = 200 (3 buckets, H100) the benchmark's reserved: 892 → 730 MB.
            torch.cuda.empty_cache()
            self.reason = None
            return out
        self.graphs.move_to_end(key)
        self.reason = None
        return self._replay(entry, padded, orders, batch.num_hits)

    def lengths(self, n: int) -> list[int]:
        """Padded lengths to try for an event of ``n`` hits: the lengths of existing graphs within the reuse
        slack (smallest first), then the length a new graph would get."""
        have = sorted({key[0] for key in self.graphs if n <= key[0] <= n * (1.0 + self.reuse_slack)})
        return [*have, bucket_length(math.ceil(n * (1.0 + self.headroom)))]

    # ------------------------------------------------------------------ internals
    def _orders(self, padded: PackedBatch) -> list[Any]:
        """The encoder's η-sliced orders of the padded batch, computed eagerly ([] for a φ-sorted encoder)."""
        enc = self.module.encoder
        if getattr(enc, "eta_slices", 0) and hasattr(enc, "sliced_orders"):
            return list(enc.sliced_orders(padded))
        return []

    def _key(self, padded: PackedBatch, orders: list[Any]) -> tuple:
        enc = self.module.encoder
        window = getattr(enc, "window", None)

        def full(max_len: int) -> bool:  # the attention kernels branch on this host-side value
            return window is None or 2 * window + 1 >= max_len

        autocast = (torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))
        return (padded.num_hits, padded.features.device, autocast, full(padded.max_seqlen),
                tuple(full(o.layout.max_seqlen) for o in orders))

    @contextlib.contextmanager
    def _static_orders(self, orders: list[Any]):
        """During capture, make the encoder read its sliced orders from the static buffers ``orders``."""
        enc = self.module.encoder
        if not orders:
            yield
            return
        enc.sliced_orders = lambda batch: orders  # instance attribute shadows the method
        try:
            yield
        finally:
            del enc.sliced_orders

    def _capture(self, padded: PackedBatch, orders: list[Any]) -> _Entry:
        enabled, dtype = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
        # Autocast's weight-cast cache must stay off while capturing (its tensors would outlive the capture).
        amp = torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False)
        # One side stream for every warm-up and capture: cuBLAS keeps a workspace per (handle, stream) for
        # the life of the process (32 MB on an H100), so a fresh warm-up stream per capture left 32 MB behind
        # each time, and torch.cuda.graph's own (process-wide) capture stream 32 MB more inside the pool.
        if self._stream is None:
            self._stream = torch.cuda.Stream()
        stream = self._stream
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), amp, self._static_orders(orders):
            for _ in range(2):  # warm-up off the capture: Triton compilation, cuBLAS handles, allocator
                self.module(padded)
        torch.cuda.current_stream().wait_stream(stream)
        # Fresh static tensors, never seen by the warm-up: anything a layer caches per input tensor (e.g. the
        # attention's block tables per cu_seqlens) is then built inside the capture, so every replay rebuilds
        # it from the static buffers' new contents instead of reusing the warm-up event's.
        static = replace(padded, **{name: getattr(padded, name).clone() for name in
                                    (*HIT_FIELDS, "sort_index", "unsort_index", "cu_seqlens")})
        static_orders = [replace(o, perm=o.perm.clone(), inverse=o.inverse.clone(),
                                 layout=replace(o.layout, cu_seqlens=o.layout.cu_seqlens.clone()))
                         for o in orders]
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, stream=stream), amp, self._static_orders(static_orders):
            outputs = self.module(static)
        return _Entry(graph=graph, batch=static, orders=static_orders, outputs=dict(outputs))

    def _replay(self, entry: _Entry, padded: PackedBatch, orders: list[Any], n: int) -> dict[str, Tensor]:
        for name in (*HIT_FIELDS, "sort_index", "unsort_index", "cu_seqlens"):
            getattr(entry.batch, name).copy_(getattr(padded, name), non_blocking=True)
        for dst, src in zip(entry.orders, orders):
            dst.perm.copy_(src.perm, non_blocking=True)
            dst.inverse.copy_(src.inverse, non_blocking=True)
            dst.layout.cu_seqlens.copy_(src.layout.cu_seqlens, non_blocking=True)
        entry.graph.replay()
        return {k: v[:n].clone() for k, v in entry.outputs.items()}


def _disagreement(graphed: dict[str, Tensor], eager: dict[str, Tensor]) -> str | None:
    """None if every output agrees within bf16 rounding, else which one and by how much."""
    for key, ref in eager.items():
        got = graphed.get(key)
        if got is None or got.shape != ref.shape:
            return f"output {key!r}: shape {None if got is None else tuple(got.shape)} vs {tuple(ref.shape)}"
        if not ref.is_floating_point():
            if not torch.equal(got, ref):
                return f"output {key!r} differs"
            continue
        diff = (got.float() - ref.float()).abs()
        if diff.numel() and (not bool(torch.isfinite(diff).all()) or float(diff.max()) > 0.1
                             or float(diff.mean()) > 0.01):
            return f"output {key!r}: max |diff| {float(diff.max()):.3g}, mean {float(diff.mean()):.3g}"
    return None
