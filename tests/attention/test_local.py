"""The ``local`` Triton kernels against the ``reference`` backend (float64), forward and backward.

On CPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1) with the small
pinned tile configuration (config.INTERPRETER: 32×16 forward tiles), so inputs of a few hundred hits
already cover several tiles, interior (unmasked) tiles, edge tiles and the φ seam.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton")

from trackformers.attention.api import AttentionLayout, attend, can_run  # noqa: E402
from trackformers.attention.local import function as F  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _seed() -> int:
    seed = int.from_bytes(os.urandom(4), "little")
    torch.manual_seed(seed)
    return seed


def _close(got: torch.Tensor, ref: torch.Tensor, rtol: float) -> tuple[bool, float]:
    """‖got − ref‖ <= rtol·‖ref‖, plus an RMS floor of 0.1·rtol (inputs are O(1)) for all-zero references
    such as dq at w = 0."""
    err = (got.double() - ref).norm().item()
    bound = rtol * ref.norm().item() + rtol * 0.1 * ref.numel() ** 0.5
    return err <= bound, err / max(ref.norm().item(), 1e-30)


def _compare(lengths, window, *, h=2, d=16, dtype=torch.float32, groups=False, grad=True, rtol=1e-5,
             deterministic=False):
    seed = _seed()
    n = sum(lengths)
    base = AttentionLayout.from_lengths(lengths, device=DEV)
    g = torch.randint(0, 3, (n,), device=DEV) if groups else None
    layout = AttentionLayout(base.cu_seqlens, base.max_seqlen, window=window, groups=g)
    x64 = [torch.randn(n, h, d, device=DEV, dtype=torch.float64) for _ in range(4)]
    ref_in = [t.clone().requires_grad_(grad) for t in x64[:3]]
    ref = attend(*ref_in, layout, backend="reference")
    ins = [t.to(dtype).requires_grad_(grad) for t in x64[:3]]
    out = attend(*ins, layout, backend="local")
    pairs = [("out", out, ref)]
    if grad:
        ref.backward(x64[3])
        prev = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(deterministic)  # the two-kernel backward instead of atomic dQ
        try:
            out.backward(x64[3].to(dtype))
        finally:
            torch.use_deterministic_algorithms(prev)
        pairs += [(nm, a.grad, b.grad) for nm, a, b in zip(("dq", "dk", "dv"), ins, ref_in)]
    for name, got, want in pairs:
        assert got.dtype == dtype and got.shape == want.shape
        assert torch.isfinite(got).all(), f"{name} has NaN: unwritten rows (seed {seed})"
        ok, rel = _close(got, want, rtol)
        assert ok, f"{name}: relative error {rel:.2e} > {rtol} (lengths {lengths}, w {window}, seed {seed})"


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    """Every output buffer starts as NaN, so a row the kernels forget to write fails the isfinite check."""
    monkeypatch.setattr(F, "POISON", True)


@pytest.mark.parametrize("lengths,window", [
    ([211], 40),            # prime length; interior tiles, edge tiles and the seam on both sides
    ([1, 37, 0, 61], 5),    # a single hit, an empty event, primes
    ([97], 0),              # w = 0: each hit attends only to itself
    ([53, 29], 1000),       # window larger than the events: full attention per event
    ([64], 31),             # 2w + 1 = L - 1: the band misses exactly one key
    ([70], 33),             # 2w + 1 = L - 3 with the block span covering the ring
])
def test_local_fp32_matches_reference(lengths, window):
    _compare(lengths, window)


@pytest.mark.parametrize("lengths,window,groups", [
    ([211], 40, False),
    ([1, 37, 0, 61], 5, False),
    ([53, 29], 1000, False),
    ([150, 7], 20, True),
])
def test_local_deterministic_backward_fp32(lengths, window, groups):
    """The two-kernel backward (no atomics), chosen under torch.use_deterministic_algorithms(True)."""
    _compare(lengths, window, groups=groups, deterministic=True)


def test_local_affine_interior_tiles_fp32():
    """affine=True (not the H100 default): interior tiles off the seam index affinely and the one on the
    seam takes the masked path; forward and both backward paths."""
    from dataclasses import replace

    from trackformers.attention.local.config import INTERPRETER

    _seed()
    lengths, w = [211, 0, 97], 40
    layout = AttentionLayout.from_lengths(lengths, device=DEV, window=w)
    x = [torch.randn(sum(lengths), 2, 16, device=DEV, dtype=torch.float64) for _ in range(4)]
    ref_in = [t.clone().requires_grad_() for t in x[:3]]
    attend(*ref_in, layout, backend="reference").backward(x[3])
    for atomic in (True, False):
        cfg = replace(INTERPRETER, affine=True, bwd=INTERPRETER.bwd if atomic else None)
        ins = [t.float().requires_grad_() for t in x[:3]]
        out = F.local_attention(*ins, layout.cu_seqlens, layout.max_seqlen, w, cfg=cfg)
        out.backward(x[3].float())
        assert _close(out, attend(*x[:3], layout, backend="reference"), 1e-5)[0]
        for a, b in zip(ins, ref_in):
            assert _close(a.grad, b.grad, 1e-5)[0]


class _Spy:
    """Wraps a Triton kernel: records its name at every launch, then launches it."""

    def __init__(self, kernel, name: str, calls: list[str]):
        self.kernel, self.name, self.calls = kernel, name, calls

    def __getitem__(self, grid):
        launch = self.kernel[grid]

        def run(*args, **kwargs):
            self.calls.append(self.name)
            return launch(*args, **kwargs)

        return run


def test_backward_paths_pick(monkeypatch: pytest.MonkeyPatch):
    """A config with ``bwd`` takes the one-pass atomic backward, unless deterministic algorithms are requested;
    a config without it takes the two-kernel path; both give the reference's gradients."""
    import dataclasses

    from trackformers.attention.local.config import INTERPRETER

    calls: list[str] = []
    monkeypatch.setattr(F, "local_attn_bwd_fused", _Spy(F.local_attn_bwd_fused, "atomic", calls))
    monkeypatch.setattr(F, "local_attn_bwd_dq", _Spy(F.local_attn_bwd_dq, "two-kernel", calls))
    layout = AttentionLayout.from_lengths([23, 17], device=DEV, window=4)
    _seed()
    x = [torch.randn(40, 2, 16, device=DEV) for _ in range(4)]
    ref_in = [t.double().requires_grad_() for t in x[:3]]
    attend(*ref_in, layout, backend="reference").backward(x[3].double())

    def grads(cfg) -> list[torch.Tensor]:
        ins = [t.clone().requires_grad_() for t in x[:3]]
        F.local_attention(*ins, layout.cu_seqlens, layout.max_seqlen, 4, cfg=cfg).backward(x[3])
        return [t.grad for t in ins]

    two_kernel = dataclasses.replace(INTERPRETER, bwd=None)
    prev = torch.are_deterministic_algorithms_enabled()
    results = {}
    for name, cfg, det in (("atomic", INTERPRETER, False), ("det", INTERPRETER, True), ("none", two_kernel, False)):
        calls.clear()
        torch.use_deterministic_algorithms(det)
        try:
            results[name] = grads(cfg)
        finally:
            torch.use_deterministic_algorithms(prev)
        assert calls == (["atomic"] if name == "atomic" else ["two-kernel"]), (name, calls)
        for g, r in zip(results[name], ref_in):
            assert _close(g, r.grad, 1e-5)[0]


def test_block_tables_cached_per_layout_and_rebuilt_on_change():
    """Tables are reused for the same cu_seqlens tensor, rebuilt when it changes in place; results stay
    right after the change (a stale table would attend across the new event boundary)."""
    cu = torch.tensor([0, 50, 100], dtype=torch.int32, device=DEV)
    t1 = F.tables_for(cu, 100)
    assert F.tables_for(cu, 100) is t1 and F.tables_for(cu.clone(), 100) is not t1
    ev1 = t1(16)[0].clone()
    cu[1] = 30
    t2 = F.tables_for(cu, 100)
    assert t2 is not t1 and not torch.equal(t2(16)[0], ev1)
    _seed()
    layout = AttentionLayout(cu, 70, window=9)
    x = [torch.randn(100, 2, 16, device=DEV, dtype=torch.float64) for _ in range(3)]
    ref = attend(*x, layout, backend="reference")
    with torch.no_grad():
        assert _close(attend(*(t.float() for t in x), layout, backend="local"), ref, 1e-5)[0]  # caches [0,30,100]
        cu[1] = 60  # in place, after a call that cached the tables of [0, 30, 100]: they are stale now
        moved = AttentionLayout(cu, 60, window=9)
        ref_moved = attend(*x, AttentionLayout(cu.clone(), 60, window=9), backend="reference")
        out = attend(*(t.float() for t in x), moved, backend="local")
    assert not _close(ref_moved, ref, 1e-5)[0]  # the boundary move changes the answer...
    assert _close(out, ref_moved, 1e-5)[0]  # ...and the kernel follows it (stale tables would not)


def test_local_no_window_and_groups_fp32():
    _compare([45, 0, 130], None, d=32)
    _compare([150, 7], 20, groups=True)


def test_local_fp16_matches_reference():
    _compare([131, 2, 17], 24, d=32, dtype=torch.float16, rtol=2e-3)


def test_local_inference_saves_nothing_and_strided_views():
    """No grad: the forward alone; q, k, v as views of one fused (N, 3, H, D) projection, no copies."""
    _seed()
    lengths = [83, 41]
    layout = AttentionLayout.from_lengths(lengths, device=DEV, window=12)
    qkv = torch.randn(sum(lengths), 3, 2, 16, device=DEV, dtype=torch.float64)
    ref = attend(qkv[:, 0], qkv[:, 1], qkv[:, 2], layout, backend="reference")
    x = qkv.float()
    with torch.no_grad():
        out = attend(x[:, 0], x[:, 1], x[:, 2], layout, backend="local", scale=0.3)
        ref = attend(qkv[:, 0], qkv[:, 1], qkv[:, 2], layout, backend="reference", scale=0.3)
    assert out.is_contiguous() and _close(out, ref, 1e-5)[0]


def test_local_empty_batch():
    q = torch.randn(0, 2, 16, device=DEV, requires_grad=True)
    out = attend(q, q, q, AttentionLayout.from_lengths([0, 0], device=DEV, window=3), backend="local")
    out.sum().backward()
    assert out.shape == (0, 2, 16) and q.grad.shape == (0, 2, 16)


def test_block_table_maps_every_row_once():
    cu = torch.tensor([0, 5, 5, 40, 41], dtype=torch.int32, device=DEV)
    ev, start = F.block_table(cu, 41, 16)
    assert ev.tolist() == [0, 2, 2, 2, 3, -1, -1] and start.tolist() == [0, 0, 16, 32, 0, 0, 0]


def test_can_run_says_why_not():
    layout = AttentionLayout.from_lengths([10], window=3)
    q = torch.zeros(10, 1, 16)
    assert "head dim" in can_run("local", torch.zeros(10, 1, 24, device=DEV), layout)
    assert "dtype" in can_run("local", torch.zeros(10, 1, 16, dtype=torch.float64, device=DEV), layout)
    cone = AttentionLayout(layout.cu_seqlens, 10, 3, eta_phi=torch.zeros(10, 2), cone=0.1)
    assert "cone" in can_run("local", q.to(DEV), cone)
    if DEV == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        assert "interpreter" in can_run("local", q.bfloat16(), layout)


def test_local_under_inference_mode_matches_reference():
    # Inference tensors have no version counter: the block-table cache must not need one (it crashed here).
    torch.manual_seed(7)
    q, k, v = (torch.randn(37, 2, 16) for _ in range(3))
    with torch.inference_mode():
        layout = AttentionLayout.from_lengths([20, 17], window=3)
        out = attend(q, k, v, layout, backend="local")
        again = attend(q, k, v, layout, backend="local")
    ref = attend(q, k, v, AttentionLayout.from_lengths([20, 17], window=3), backend="reference")
    assert torch.allclose(out, ref, atol=1e-5) and torch.equal(out, again)


def test_views_whose_row_stride_would_overflow_int32_are_copied():
    """Views of a fused (N, 3, H, D) projection have 3× the row stride of copies: for an event long enough that
    views would overflow the kernels' int32 row offsets but copies would not, the call copies and runs; past
    the copies' limit it refuses with one sentence."""
    _seed()
    lengths = [40, 13]
    cu = torch.tensor([0, 40, 53], dtype=torch.int32, device=DEV)
    qkv = torch.randn(53, 3, 2, 16, device=DEV)
    q, k, v = qkv.unbind(1)  # row stride 96; copies: 32
    huge = 2**31 // 64  # a declared max_seqlen: 96·huge overflows, 32·huge does not
    with torch.no_grad():
        out = F.local_attention(q, k, v, cu, huge, 5)
        want = attend(q, k, v, AttentionLayout.from_lengths(lengths, device=DEV, window=5), backend="reference")
    assert _close(out, want, 1e-5)[0]
    with pytest.raises(ValueError, match="overflows int32"):
        F.local_attention(q, k, v, cu, 2**31 // 16, 5)
