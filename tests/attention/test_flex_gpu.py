"""Compiled FlexAttention on a CUDA GPU: bf16 / fp16 forward + backward against a float64 reference.

Imports torch only (the device machine has no uproot / jsonargparse).
"""

from __future__ import annotations

import pytest
import torch

from trackformers.attention import AttentionLayout, attend
from trackformers.attention.flex import build_block_mask, flex_attention_with_mask, padded_length
from trackformers.attention.reference import reference_attention

pytestmark = pytest.mark.gpu


def _inputs(lengths: list[int], heads: int, dim: int, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    """q, k, v, grad_out in ``dtype`` on the GPU (the float64 reference sees exactly these values)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    n = sum(lengths)
    return [torch.randn(n, heads, dim, generator=g, device="cuda").to(dtype) for _ in range(4)]


def _reference_per_event(layout: AttentionLayout, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         grad_out: torch.Tensor, scale: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """float64 output and (dq, dk, dv), one event at a time (bounded memory: O(H L²) per event)."""
    outs, grads = [], [[], [], []]
    cu = layout.cu_seqlens.tolist()
    for s, e in zip(cu[:-1], cu[1:]):
        if e == s:  # an empty event contributes nothing (and has no graph to differentiate)
            continue
        sub = AttentionLayout.from_lengths(
            [e - s], device=q.device, window=layout.window, cone=layout.cone,
            groups=None if layout.groups is None else layout.groups[s:e],
            eta_phi=None if layout.eta_phi is None else layout.eta_phi[s:e])
        leaves = [t[s:e].double().requires_grad_() for t in (q, k, v)]
        out = reference_attention(*leaves, sub, scale)
        out.backward(grad_out[s:e].double())
        outs.append(out.detach())
        for i, t in enumerate(leaves):
            grads[i].append(t.grad)
        del out, leaves
    return torch.cat(outs), [torch.cat(g) for g in grads]


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.double() - ref).norm() / ref.norm())


def _errors(out: torch.Tensor, grads: list[torch.Tensor], ref_out: torch.Tensor,
            ref_grads: list[torch.Tensor]) -> dict[str, float]:
    names = ("dq", "dk", "dv")
    return {"out": _rel(out, ref_out)} | {n: _rel(g, r) for n, g, r in zip(names, grads, ref_grads)}


def _flex_fwd_bwd(layout: AttentionLayout, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  grad_out: torch.Tensor, backend: str = "flex") -> tuple[torch.Tensor, list[torch.Tensor]]:
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = attend(*leaves, layout, backend=backend)
    out.backward(grad_out)
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 2e-2), (torch.float16, 4e-3)])
def test_flex_matches_float64_reference(dtype: torch.dtype, tol: float) -> None:
    lengths, heads, dim, window = [5003, 9001, 13007], 4, 64, 512
    layout = AttentionLayout.from_lengths(lengths, device="cuda", window=window)
    q, k, v, grad_out = _inputs(lengths, heads, dim, dtype, seed=1)
    out, grads = _flex_fwd_bwd(layout, q, k, v, grad_out)
    ref_out, ref_grads = _reference_per_event(layout, q, k, v, grad_out, dim**-0.5)
    assert out.dtype == dtype and out.shape == q.shape
    _check(_errors(out, grads, ref_out, ref_grads),
           _errors(*_flex_fwd_bwd(layout, q, k, v, grad_out, "dense"), ref_out, ref_grads), tol, f"{dtype}")


def _check(errors: dict[str, float], dense_errors: dict[str, float], tol: float, what: str) -> None:
    """Flex's error must be that of the dtype, not of a mask mistake (which gives O(1) relative errors):
    below ``tol`` or within 2× of SDPA's (the dense backend) in the same dtype."""
    print(f"flex {what} relative L2 errors vs float64: {errors}; dense (SDPA): {dense_errors}")
    for name, err in errors.items():
        assert err < tol or err < 2 * dense_errors[name], (
            f"{what} {name}: relative error {err:.2e} (dense {dense_errors[name]:.2e}, tol {tol:.0e}); "
            f"all: {errors}, dense: {dense_errors}")


def test_flex_groups_cone_window_matches_reference() -> None:
    lengths, heads, dim = [1031, 1, 2053, 0, 3001], 2, 32
    n = sum(lengths)
    g = torch.Generator(device="cuda").manual_seed(5)
    # a 2⁻⁸ grid, so that the float32 cone test in the kernel agrees exactly with the float64 reference
    eta = torch.round((torch.rand(n, generator=g, device="cuda", dtype=torch.float64) * 4 - 2) * 256) / 256
    phi = torch.round((torch.rand(n, generator=g, device="cuda", dtype=torch.float64) * 2 - 1) * 804) / 256
    cu = [0, *torch.tensor(lengths).cumsum(0).tolist()]
    phi = torch.cat([phi[s:e].sort().values for s, e in zip(cu[:-1], cu[1:])])
    layout = AttentionLayout.from_lengths(lengths, device="cuda", window=300,
                                          groups=torch.randint(0, 3, (n,), generator=g, device="cuda"),
                                          eta_phi=torch.stack([eta, phi], 1), cone=1.2)
    q, k, v, grad_out = _inputs(lengths, heads, dim, torch.float16, seed=2)
    out, grads = _flex_fwd_bwd(layout, q, k, v, grad_out)
    ref_out, ref_grads = _reference_per_event(layout, q, k, v, grad_out, dim**-0.5)
    dense = _flex_fwd_bwd(layout, q, k, v, grad_out, "dense")
    _check(_errors(out, grads, ref_out, ref_grads), _errors(*dense, ref_out, ref_grads), 4e-3,
           "groups+cone fp16")


def test_flex_lengths_within_a_bucket_do_not_recompile() -> None:
    """Training calls with different event sizes but one padded length reuse the compiled kernels."""
    cases = [[3000, 2000, 1001], [6001], [1, 2, 3, 4000, 1999], [5000, 1100]]
    assert len({padded_length(sum(c)) for c in cases}) == 1
    for i, lengths in enumerate(cases):
        layout = AttentionLayout.from_lengths(lengths, device="cuda", window=256)
        q, k, v, grad_out = _inputs(lengths, 4, 64, torch.bfloat16, seed=10 + i)
        with torch._dynamo.config.patch(error_on_recompile=i > 0):
            out, grads = _flex_fwd_bwd(layout, q, k, v, grad_out)
        assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)
    # inference (no grad) with the same bucket: one more graph at most, then none
    for i, lengths in enumerate(cases[:2]):
        layout = AttentionLayout.from_lengths(lengths, device="cuda", window=256)
        q, k, v, _ = _inputs(lengths, 4, 64, torch.bfloat16, seed=20 + i)
        with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=i > 0):
            out = flex_attention_with_mask(q, k, v, build_block_mask(layout, "cuda"), 0.125)
        assert out.shape == q.shape


def test_flex_block_mask_build_on_gpu_matches_cpu() -> None:
    layout_gpu = AttentionLayout.from_lengths([40000, 50000, 41072], device="cuda", window=512)
    layout_cpu = AttentionLayout.from_lengths([40000, 50000, 41072], window=512)
    a, b = build_block_mask(layout_gpu, "cuda"), build_block_mask(layout_cpu, "cpu")
    for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices", "q_num_blocks",
                 "full_q_indices"):
        assert torch.equal(getattr(a, name).cpu(), getattr(b, name)), name
