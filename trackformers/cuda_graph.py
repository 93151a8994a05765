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

**Lending the pool.** The graphs' private memory pool holds the largest bucket's activations (≈ 250–290 MB
at μ = 200 in bf16), but those blocks are busy only *during* a replay. Inside ``with forward.borrowing():``
every allocation made after a replay (the output copies, the clusterer's working tensors) is served from that
pool (``torch.cuda.use_mem_pool``), so the work after the model reuses the blocks instead of growing the
default pool beside it. The invariant that makes this legal: **every tensor allocated from the pool after a
replay is dead before the next replay, and all of it runs on one stream** (the scope runs on the graphs' own
side stream, so the replays, the borrowed allocations and the capture share it). It is enforced, not trusted:
before each replay the pool's allocated blocks are compared with those the graphs own; if a borrowed tensor is
still alive, the pool is retired (kept, not reused: the live tensor stays intact), the graphs are captured
again into a new pool, a warning is logged and ``retired`` counts it. Each capture's eager warm-up runs in the
pool as well (``warmup_in_pool``): it then reuses the idle blocks of the graphs before it and leaves its own
freed blocks to the capture, instead of adding a forward's activations beside the pool while capturing.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from trackformers.batch import HIT_FIELDS, TRUTH_FIELDS, PackedBatch

log = logging.getLogger(__name__)


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
    truth = dict.fromkeys(TRUTH_FIELDS)
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
        check: compare each new graph's first replay with the eager forward (the warm-up's, on the same
            padded rows) and fall back if they differ beyond bf16 rounding (max |Δ| > ``0.1`` or mean
            |Δ| > ``0.01`` on any output).
        reuse_slack: an event of n hits replays an existing graph of length L if n ≤ L ≤ n·(1 + slack)
            (the smallest such), so events of similar size share one graph instead of one per bucket.
        headroom: a new graph is captured for ``bucket_length(n·(1 + headroom))`` rows, so that it also
            serves somewhat larger later events. Fewer graphs hold less memory: every graph keeps its own
            blocks of the shared pool that differently sized later captures cannot reuse.
        lend_pool: inside :meth:`borrowing`, serve the allocations after each replay from the graphs' pool
            (see the module docstring); False: ``borrowing()`` only switches to the side stream.
        warmup_in_pool: (with ``lend_pool``) run each capture's eager warm-up in the graph pool too, so a
            new graph's warm-up reuses the idle blocks of the graphs before it instead of growing the default
            pool beside them (the process's peak while capturing), and its activations' blocks serve the
            capture right after.
    """

    def __init__(self, module: Any, *, max_graphs: int = 4, check: bool = True, reuse_slack: float = 0.0,
                 headroom: float = 0.0, lend_pool: bool = True, warmup_in_pool: bool = True) -> None:
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
        self._pool: Any = None  # the graphs' MemPool (lend_pool) ...
        self._plain_pool: Any = None  # ... or their plain graph-pool handle
        self._stream: Any = None
        self.lend_pool = lend_pool and hasattr(torch.cuda, "use_mem_pool")
        self.warmup_in_pool = warmup_in_pool and self.lend_pool
        self.retired = 0  # pools given up because a borrowed tensor was alive at a replay
        self._retired_pools: list[Any] = []  # kept alive: their live borrowed tensors must not be freed under them
        self._owned: frozenset[tuple[int, int]] = frozenset()  # (address, size) of the graphs' own pool blocks
        self._lent = False  # blocks may have been lent since the last check
        self._routing: contextlib.ExitStack | None = None  # the active use_mem_pool, while lending
        self._borrowing = 0  # depth of open borrowing() scopes

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

    # ------------------------------------------------------------------ lending the pool
    @contextlib.contextmanager
    def borrowing(self) -> Iterator[None]:
        """Run the block on the graphs' side stream; allocations after each replay come from the graph pool.

        Everything allocated after a replay inside the block (the returned outputs included) must be dead
        before the next call of this object: copy to the host (``.cpu()``) what must outlive it. A no-op off
        CUDA. On exit the caller's stream waits for the side stream.
        """
        device = _module_device(self.module)
        if device.type != "cuda":
            yield
            return
        with torch.cuda.device(device):
            if self._stream is None:
                self._stream = torch.cuda.Stream()
            outer = torch.cuda.current_stream()
            self._stream.wait_stream(outer)
            self._borrowing += 1
            try:
                with torch.cuda.stream(self._stream):
                    yield
            finally:
                self._stop_lending()
                self._borrowing -= 1
                outer.wait_stream(self._stream)

    def _start_lending(self) -> None:
        """Route this thread's allocations to the graph pool (until the next call or the scope's end)."""
        if not (self.lend_pool and self._borrowing and self._pool is not None) or self._routing is not None:
            return
        if torch.cuda.current_stream() != self._stream:  # the pool's free blocks belong to the side stream
            return
        stack = contextlib.ExitStack()
        stack.enter_context(torch.cuda.use_mem_pool(self._pool))
        self._routing = stack
        self._lent = True

    def _stop_lending(self) -> None:
        if self._routing is not None:
            self._routing.close()
            self._routing = None

    def _pool_blocks(self) -> frozenset[tuple[int, int]]:
        """(address, size) of every allocated block of the graph pool."""
        held = []
        for seg in self._pool.snapshot():
            address = seg["address"]  # blocks tile their segment in address order
            for block in seg["blocks"]:
                if block["state"] != "inactive":
                    held.append((address, block["size"]))
                address += block["size"]
        return frozenset(held)

    def _check_pool(self, device: torch.device) -> None:
        """Before a replay: retire the pool if a block lent since the last replay is still allocated."""
        if not self._lent:
            return
        self._lent = False
        # Fast path (a C++ walk over the allocator's live blocks, as torch's cudagraph trees check their
        # pools): exactly the graphs' own blocks are allocated. The snapshot below costs ~0.3 ms at μ = 200.
        fast = getattr(torch._C, "_cuda_checkPoolLiveAllocations", None)
        if fast is not None and fast(device.index, self._pool.id, {a for a, _ in self._owned}):
            return
        held = self._pool_blocks()
        if held <= self._owned:
            self._owned = held  # (a graph-owned block may have been freed meanwhile)
            return
        self.retired += 1
        log.warning("%d tensor(s) allocated from the CUDA-graph pool after a replay are still alive at the next "
                    "replay (GraphedForward.borrowing: copy what must outlive the call to the host); the pool "
                    "is retired and the graphs are captured again", len(held - self._owned))
        self._retired_pools.append(self._pool)
        self.graphs.clear()
        self._pool, self._owned = None, frozenset()

    # ------------------------------------------------------------------ call
    def __call__(self, batch: PackedBatch) -> dict[str, Tensor]:
        self._stop_lending()  # padding, input copies, captures and eager runs allocate from the default pool
        reason = self.why_not(batch)
        if reason is not None:
            return self._eager(batch, reason)
        self._check_pool(batch.features.device)
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
                entry, eager = self._capture(padded, orders)
            except Exception as err:  # noqa: BLE001 - any capture failure means: run this bucket eagerly
                torch.cuda.synchronize()
                first = (str(err).splitlines() or [""])[0][:200]
                self.failed[key] = f"capture failed ({type(err).__name__}: {first})"
                return self._eager(batch, self.failed[key])
            self.graphs[key] = entry
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
            out = self._replay(entry, padded, orders, batch.num_hits)
            bad = _disagreement(out, {k: v[:batch.num_hits] for k, v in eager.items()}) if self.check else None
            del eager  # (in the pool with warmup_in_pool: dead before the next replay, as every lent block)
            if bad is not None:
                del self.graphs[key]
                self.failed[key] = f"the replayed graph disagrees with the eager forward ({bad})"
                return self._eager(batch, self.failed[key])
            # Hand back what the warm-up (side stream) left in the default pool's cache: replays never reuse
            # it. At μ = 200 (3 buckets, H100; the warm-up then beside the pool) reserved: 892 → 730 MB.
            torch.cuda.empty_cache()
            if self._pool is not None and self.lend_pool:
                self._owned = self._pool_blocks()  # the graphs' static outputs (and what layers cached)
            self._start_lending()
            self.reason = None
            return out
        self.graphs.move_to_end(key)
        self.reason = None
        return self._replay(entry, padded, orders, batch.num_hits, lend=True)

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

    def _capture(self, padded: PackedBatch, orders: list[Any]) -> tuple[_Entry, dict[str, Tensor]]:
        """A new graph of ``module(padded)`` and the eager warm-up's outputs (the check's reference)."""
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
        if self._pool is None:  # a MemPool, so that borrowing() can route allocations to it
            self._pool = torch.cuda.MemPool() if self.lend_pool else None
        # The warm-up in the pool (on the stream its blocks belong to): it needs about what the capture
        # needs, so the capture reuses its freed blocks; its output (the check's reference) stays allocated
        # there, which the capture then leaves alone.
        in_pool = torch.cuda.use_mem_pool(self._pool) if self.warmup_in_pool else contextlib.nullcontext()
        with torch.cuda.stream(stream), amp, self._static_orders(orders), in_pool:
            for _ in range(2):  # warm-up off the capture: Triton compilation, cuBLAS handles, allocator
                eager = dict(self.module(padded))
        torch.cuda.current_stream().wait_stream(stream)
        # Fresh static tensors, never seen by the warm-up: anything a layer caches per input tensor (e.g. the
        # attention's block tables per cu_seqlens) is then built inside the capture, so every replay rebuilds
        # it from the static buffers' new contents instead of reusing the warm-up event's.
        static = replace(padded, **{name: getattr(padded, name).clone() for name in
                                    (*HIT_FIELDS, "sort_index", "unsort_index", "cu_seqlens")})
        static_orders = [replace(o, perm=o.perm.clone(), inverse=o.inverse.clone(),
                                 layout=replace(o.layout, cu_seqlens=o.layout.cu_seqlens.clone()))
                         for o in orders]
        pool = self._pool.id if self._pool is not None else self._handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool, stream=stream), amp, self._static_orders(static_orders):
            outputs = self.module(static)
        return _Entry(graph=graph, batch=static, orders=static_orders, outputs=dict(outputs)), eager

    def _handle(self) -> Any:
        """The shared pool's handle when the pool is not lent (a plain graph pool, as before MemPool)."""
        if self._plain_pool is None:
            self._plain_pool = torch.cuda.graph_pool_handle()
        return self._plain_pool

    def _replay(self, entry: _Entry, padded: PackedBatch, orders: list[Any], n: int,
                lend: bool = False) -> dict[str, Tensor]:
        for name in (*HIT_FIELDS, "sort_index", "unsort_index", "cu_seqlens"):
            getattr(entry.batch, name).copy_(getattr(padded, name), non_blocking=True)
        for dst, src in zip(entry.orders, orders):
            dst.perm.copy_(src.perm, non_blocking=True)
            dst.inverse.copy_(src.inverse, non_blocking=True)
            dst.layout.cu_seqlens.copy_(src.layout.cu_seqlens, non_blocking=True)
        entry.graph.replay()
        if lend:
            self._start_lending()  # the copies below and the caller's work until the next call: graph pool
        return {k: v[:n].clone() for k, v in entry.outputs.items()}


def _module_device(module: Any) -> torch.device:
    param = next(iter(module.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


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
