"""Tile configurations of the ``local`` kernels: pinned per head dim, chosen by an H100 sweep.

``benchmarks/attention.py --sweep`` times every candidate of :func:`candidates` for each kernel and prints
the winner per head dim; the winners are pinned in :data:`TUNED` (see docs/benchmarks.md for the sweep that
chose them). Under Triton's CPU interpreter a small fixed configuration is used so that tests exercise
several tiles, interior tiles and the φ seam on inputs of a few hundred hits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class TileConfig:
    """One launch configuration. ``block_m``: query rows per tile, ``block_n``: key rows per tile;
    ``maxnreg``: register cap per thread (None: the compiler's choice; a cap trades spills for occupancy)."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int
    maxnreg: int | None = None

    def launch(self) -> dict:
        """Launch keyword arguments of a Triton kernel."""
        kw = dict(num_warps=self.num_warps, num_stages=self.num_stages)
        if self.maxnreg is not None:
            kw["maxnreg"] = self.maxnreg
        return kw


@dataclass(frozen=True)
class KernelConfigs:
    """Forward, dK/dV (outer block = ``block_n`` keys, inner = ``block_m`` queries) and dQ configurations of
    the deterministic two-kernel backward, and ``bwd``: the one-pass atomic backward (outer = ``block_n``
    keys, inner = ``block_m`` queries), None to always use the two-kernel path."""

    fwd: TileConfig
    dkdv: TileConfig
    dq: TileConfig
    bwd: TileConfig | None = None
    #: interior tiles off the φ seam index keys/queries affinely (one scalar shift per tile) instead of a
    #: per-element wrap; the one interior tile on the seam takes the masked path (forward and two-kernel bwd)
    affine: bool = True


#: Configuration used under TRITON_INTERPRET=1 (tests on CPU): small tiles, many of them.
INTERPRETER = KernelConfigs(fwd=TileConfig(32, 16, 4, 1), dkdv=TileConfig(16, 32, 4, 1),
                            dq=TileConfig(32, 16, 4, 1), bwd=TileConfig(16, 32, 4, 1), affine=False)

#: H100 winners per head dim (bf16/fp16). Tiles from ``benchmarks/attention.py --sweep --n 65536 --w 512``
#: (2026-11-24 01:40 UTC; D = 64 and 32 swept; D = 16 takes D = 32's, D = 128 smaller stages for shared
#: memory); the forward's register cap and ``affine=False`` from ``--sweep --n 131072 --w 512 --kinds
#: fwd,affine`` (04:57 UTC): without a cap the forward's six band loops make ptxas take 255 registers (2
#: blocks per SM; 1.065 vs 0.900 ms at D = 64), and affine interior tiles measured slower (f+b 3.81 vs
#: 3.54 ms at D = 64, equal at D = 32). fp32 uses the same tiles halved (IEEE fp32 dots need registers).
TUNED: dict[int, KernelConfigs] = {
    16: KernelConfigs(TileConfig(64, 64, 4, 3, 128), TileConfig(128, 64, 4, 2), TileConfig(64, 32, 4, 4),
                      affine=False),
    32: KernelConfigs(TileConfig(64, 64, 4, 3, 128), TileConfig(128, 64, 4, 2), TileConfig(64, 32, 4, 4),
                      affine=False),
    64: KernelConfigs(TileConfig(64, 64, 4, 3, 168), TileConfig(128, 64, 4, 2), TileConfig(64, 64, 4, 3),
                      affine=False),
    128: KernelConfigs(TileConfig(64, 64, 4, 2), TileConfig(64, 64, 4, 2), TileConfig(64, 64, 4, 2),
                       affine=False),
}
#: ``bwd`` stays None above: the one-pass atomic backward measured slower than the two-kernel one on the H100
#: (N = 65536, w = 512, bf16: 1.62 vs 1.40 ms at D = 64, 1.13 vs 0.97 ms at D = 32; best of 10 tiles each,
#: docs/benchmarks.md), so the deterministic path is also the fast default. Best atomic tiles, for pinning:
ATOMIC_BWD: dict[int, TileConfig] = {16: TileConfig(64, 64, 4, 2), 32: TileConfig(64, 64, 4, 2),
                                     64: TileConfig(64, 64, 4, 2), 128: TileConfig(64, 64, 8, 2)}


def interpreting() -> bool:
    """True when Triton kernels run in the CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def configs_for(head_dim: int, elem_bytes: int) -> KernelConfigs:
    """The configuration set used for a call with this head dim and element size."""
    if interpreting():
        return INTERPRETER
    cfg = TUNED[head_dim]
    if elem_bytes == 4:
        return KernelConfigs(*(c if c is None else
                               TileConfig(max(16, c.block_m // 2), max(16, c.block_n // 2), c.num_warps, 2, None)
                               for c in (cfg.fwd, cfg.dkdv, cfg.dq, cfg.bwd)), affine=cfg.affine)
    return cfg


#: Sweep sets per kernel, (block_m, block_n, num_warps, num_stages); for dkdv block_n is the outer key block.
_CANDIDATES = {
    "fwd": [(64, 64, 4, 3), (64, 64, 4, 3, 168), (64, 32, 4, 4), (64, 64, 4, 3, 128)],
    "dkdv": [(128, 64, 4, 2), (64, 128, 8, 2), (64, 64, 4, 3), (128, 64, 8, 2), (32, 64, 4, 4)],
    "dq": [(64, 64, 4, 3), (64, 64, 4, 3, 168), (64, 32, 4, 4), (128, 32, 8, 3)],
    "bwd": [(64, 128, 8, 2), (64, 128, 8, 1), (32, 128, 8, 2), (32, 128, 8, 3), (64, 64, 4, 2),
            (64, 64, 8, 2), (32, 64, 4, 3), (16, 64, 4, 3), (128, 64, 8, 2), (64, 128, 4, 2)],
}


def candidates(kind: str, head_dim: int) -> list[TileConfig]:
    """The small sweep set of one kernel ("fwd", "dkdv", "dq") for ``benchmarks/attention.py --sweep``."""
    out = [TileConfig(*c) for c in _CANDIDATES[kind]]
    if head_dim == 128:  # 128×128 tiles with 3+ stages overflow shared memory at D = 128
        out = [c for c in out if c.block_m * c.block_n <= 128 * 64 or c.num_stages <= 2]
    return out


def set_tuned(table: dict) -> None:
    """Override :data:`TUNED` from a sweep's JSON ({"64": {"fwd": {...}, "dkdv": {...}, "dq": {...},
    "bwd": {...} or null}})."""
    for d, kinds in table.items():
        TUNED[int(d)] = KernelConfigs(**{k: v if v is None or isinstance(v, bool) else TileConfig(**v)
                                         for k, v in kinds.items()})
