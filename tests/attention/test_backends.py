"""Every CPU-capable attention backend against the float64 ``reference``: forward, backward, masks, errors."""

from __future__ import annotations

import logging

import pytest
import torch

from trackformers.attention import AttentionLayout, BackendUnavailable, api, attend, can_run
from trackformers.attention.flex import flex_attention_with_mask
from trackformers.attention.flex_mask import (
    BLOCK,
    build_block_mask,
    build_block_mask_eager,
    padded_length,
)

LENGTHS = [[1], [2], [13, 1, 131], [257, 0, 2, 13], [300], [128, 129, 0], [0, 5, 0]]
WINDOWS = [0, 3, 40, 1000, None]


def make_case(lengths: list[int], *, window: int | None, groups: bool = False, cone: float | None = None,
              heads: int = 2, dim: int = 16, seed: int = 0) -> tuple[AttentionLayout, list[torch.Tensor]]:
    """A layout over φ-sorted random events and float64 q, k, v of shape (N, heads, dim)."""
    g = torch.Generator().manual_seed(seed + 7919 * len(lengths) + sum(lengths))
    n = sum(lengths)
    extra: dict[str, object] = {}
    if groups:
        extra["groups"] = torch.randint(0, 3, (n,), generator=g)
    if cone is not None:
        # On a 2⁻⁸ grid: Δη², Δφ² are then exact in float32 and never within rounding of cone², so backends
        # computing the cone in float32 agree exactly with the float64 reference.
        eta = torch.round((torch.rand(n, generator=g, dtype=torch.float64) * 4 - 2) * 256) / 256
        phi = torch.round((torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 804) / 256  # |φ| < π
        cu = [0, *torch.tensor(lengths).cumsum(0).tolist()]
        phi = torch.cat([phi[s:e].sort().values for s, e in zip(cu[:-1], cu[1:])]) if n else phi
        extra.update(eta_phi=torch.stack([eta, phi], 1), cone=cone)
    layout = AttentionLayout.from_lengths(lengths, window=window, **extra)
    qkv = [torch.randn(n, heads, dim, generator=g, dtype=torch.float64) for _ in range(3)]
    return layout, qkv


def check_forward(backend: str, layout: AttentionLayout, q: torch.Tensor, k: torch.Tensor,
                  v: torch.Tensor) -> None:
    ref = attend(q, k, v, layout, backend="reference")
    out = attend(q.float(), k.float(), v.float(), layout, backend=backend)
    assert out.shape == q.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", ["dense", "flex"])
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
def test_forward_matches_reference(backend: str, lengths: list[int], window: int | None) -> None:
    layout, (q, k, v) = make_case(lengths, window=window)
    check_forward(backend, layout, q, k, v)


def test_reference_window_semantics() -> None:
    """The oracle itself: w = 0 attends to self only (output = v); a window ≥ L is full attention."""
    layout, (q, k, v) = make_case([13, 1, 131], window=0)
    torch.testing.assert_close(attend(q, k, v, layout, backend="reference"), v)
    wide, _ = make_case([13, 1, 131], window=66)
    full, _ = make_case([13, 1, 131], window=None)
    torch.testing.assert_close(attend(q, k, v, wide, backend="reference"),
                               attend(q, k, v, full, backend="reference"))
    # wrap-around: in an event of 13, position 0 sees positions 11, 12 with w = 2 (checked via v one-hot)
    small = AttentionLayout.from_lengths([13], window=2)
    eye = torch.eye(13, dtype=torch.float64)[:, None, :]
    zeros = torch.zeros(13, 1, 13, dtype=torch.float64)
    out = attend(zeros, zeros, eye, small, backend="reference")
    assert torch.nonzero(out[0, 0]).flatten().tolist() == [0, 1, 2, 11, 12]


@pytest.mark.parametrize("backend, lengths", [("dense", [13, 1, 131]), ("dense", [257, 0, 2, 13]),
                                             ("flex", [13, 1, 131])], ids=str)
@pytest.mark.parametrize("window", [5, None])
def test_groups_and_cone(backend: str, lengths: list[int], window: int | None) -> None:
    for groups, cone in ((True, None), (False, 0.9), (True, 1.5)):
        layout, (q, k, v) = make_case(lengths, window=window, groups=groups, cone=cone)
        check_forward(backend, layout, q, k, v)


@pytest.mark.parametrize("lengths", [[1], [13, 1, 131], [257, 0, 2, 13], [300]], ids=str)
@pytest.mark.parametrize("window", [0, 7, None])
@pytest.mark.parametrize("extras", [False, True])
def test_dense_backward_matches_reference(lengths: list[int], window: int | None, extras: bool) -> None:
    layout, qkv = make_case(lengths, window=window, groups=extras, cone=1.2 if extras else None)
    g = torch.Generator().manual_seed(3)
    grad_out = torch.randn(qkv[0].shape, generator=g, dtype=torch.float64)
    grads = {}
    for backend, dtype in (("reference", torch.float64), ("dense", torch.float64), ("dense", torch.float32)):
        leaves = [t.detach().to(dtype).clone().requires_grad_() for t in qkv]
        out = attend(*leaves, layout, backend=backend)
        (out * grad_out.to(dtype)).sum().backward()
        grads[backend, dtype] = [t.grad.double() for t in leaves]
    for a, b in zip(grads["reference", torch.float64], grads["dense", torch.float64]):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-9)
    for a, b in zip(grads["reference", torch.float64], grads["dense", torch.float32]):
        torch.testing.assert_close(b, a, atol=5e-5, rtol=1e-4)


def test_empty_batch() -> None:
    layout, (q, k, v) = make_case([0, 0], window=3)
    for backend in ("dense", "flex", "reference"):
        out = attend(q.float(), k.float(), v.float(), layout, backend=backend)
        assert out.shape == (0, 2, 16)
    q.requires_grad_()
    attend(q, k, v, layout, backend="dense").sum().backward()
    assert q.grad is not None and q.grad.shape == q.shape


# --- can_run / explicit requests / auto ------------------------------------------------------------------


def test_explicit_backend_that_cannot_run_raises() -> None:
    big = AttentionLayout.from_lengths([20000], window=16)
    q = torch.zeros(20000, 1, 16)
    assert "dense materialises" in can_run("dense", q, big)
    with pytest.raises(BackendUnavailable, match="'dense' cannot run: dense materialises"):
        attend(q, q, q, big, backend="dense")
    layout, (q, k, v) = make_case([13, 4], window=2)
    q32 = q.float().requires_grad_()
    with pytest.raises(BackendUnavailable, match="flex has no CPU backward; use dense or local"):
        attend(q32, k.float(), v.float(), layout, backend="flex")
    with pytest.raises(BackendUnavailable, match="float32, bfloat16 and float16"):
        attend(q, k, v, layout, backend="flex")  # float64
    q24 = torch.zeros(17, 2, 24)
    with pytest.raises(BackendUnavailable, match="head dim"):
        attend(q24, q24, q24, layout, backend="flex")
    with pytest.raises(BackendUnavailable, match="unknown attention backend"):
        attend(q, k, v, layout, backend="nope")
    coneless = AttentionLayout.from_lengths([13, 4], window=2, cone=0.5)
    assert "eta_phi" in can_run("dense", q, coneless) and "eta_phi" in can_run("flex", q.float(), coneless)


def test_flex_inference_under_no_grad_is_allowed_on_cpu() -> None:
    layout, (q, k, v) = make_case([13, 4], window=2)
    q32 = q.float().requires_grad_()
    with torch.no_grad():
        out = attend(q32, k.float(), v.float(), layout, backend="flex")
    ref = attend(q, k, v, layout, backend="reference")
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)


def test_auto_logs_skipped_backends(caplog: pytest.LogCaptureFixture,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "AUTO_ORDER_CPU", ("flex", "dense", "reference"))
    layout, (q, k, v) = make_case([13, 1, 131], window=4)
    leaves = [t.float().requires_grad_() for t in (q, k, v)]
    with caplog.at_level(logging.INFO, logger="trackformers.attention.api"):
        out = attend(*leaves, layout)
    assert "skipped flex: flex has no CPU backward" in caplog.text
    assert "skipped dense" not in caplog.text
    torch.testing.assert_close(out.detach().double(), attend(q, k, v, layout, backend="reference"),
                               atol=2e-5, rtol=1e-4)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="trackformers.attention.api"):
        attend(q, k, v, layout)  # float64: flex refuses the dtype, dense runs
    assert "skipped flex: flex supports float32" in caplog.text


def test_auto_on_cpu_prefers_dense_and_falls_back_to_flex(caplog: pytest.LogCaptureFixture) -> None:
    layout, (q, k, v) = make_case([13, 1, 131], window=4)
    with caplog.at_level(logging.INFO, logger="trackformers.attention.api"):
        out = attend(q.float(), k.float(), v.float(), layout)
    assert "skipped dense" not in caplog.text and "skipped flex" not in caplog.text
    torch.testing.assert_close(out.double(), attend(q, k, v, layout, backend="reference"), atol=2e-5, rtol=1e-4)
    # an event too long for dense (and the reference): inference goes to flex, saying why dense was skipped
    big = AttentionLayout.from_lengths([20000], window=16)
    reasons = {name: can_run(name, torch.zeros(20000, 1, 16), big) for name in ("dense", "flex", "reference")}
    assert reasons["dense"] and reasons["reference"] and reasons["flex"] is None


# --- the BlockMask built from block indices vs create_block_mask -----------------------------------------


def _dense_blocks(num: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    nb = idx.shape[-1]
    out = torch.zeros(nb, nb, dtype=torch.bool)
    for row in range(nb):
        out[row, idx[0, 0, row, : int(num[0, 0, row])].long()] = True
    return out


def _tables(mask: object) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"kv" | "q": (partial, full)} as dense (nb, nb) bool block matrices."""
    out = {}
    for side in ("kv", "q"):
        partial = _dense_blocks(getattr(mask, f"{side}_num_blocks"), getattr(mask, f"{side}_indices"))
        full = _dense_blocks(getattr(mask, f"full_{side}_num_blocks"), getattr(mask, f"full_{side}_indices"))
        out[side] = (partial, full)
    return out


@pytest.mark.parametrize("lengths", [[1], [2, 3], [13, 1, 131], [257, 0, 2, 13], [300], [128, 129],
                                     [1000, 700, 5], [2000], [0, 640, 0]], ids=str)
@pytest.mark.parametrize("window", [0, 3, 40, 127, 128, 300, 1000, None])
def test_block_mask_equals_create_block_mask(lengths: list[int], window: int | None) -> None:
    layout = AttentionLayout.from_lengths(lengths, window=window)
    fast, slow = _tables(build_block_mask(layout, "cpu")), _tables(build_block_mask_eager(layout, "cpu"))
    for side in ("kv", "q"):  # q tables = the transpose, used by the backward pass
        assert torch.equal(fast[side][0], slow[side][0]), side  # partial blocks
        assert torch.equal(fast[side][1], slow[side][1]), side  # full blocks
    assert torch.equal(fast["kv"][1], slow["q"][1].T)


@pytest.mark.parametrize("lengths, window", [([2000], 999), ([1500, 1300], 449), ([1500, 1300], 700),
                                             ([641, 900], 349), ([1000, 700, 5], 299)], ids=str)
def test_block_mask_near_half_event_windows(lengths: list[int], window: int) -> None:
    """Windows close to L/2: tiles reached both directly and around the wrap are still classified exactly."""
    layout = AttentionLayout.from_lengths(lengths, window=window)
    fast, slow = _tables(build_block_mask(layout, "cpu")), _tables(build_block_mask_eager(layout, "cpu"))
    assert torch.equal(fast["kv"][0], slow["kv"][0]) and torch.equal(fast["kv"][1], slow["kv"][1])


@pytest.mark.parametrize("lengths", [[13, 1, 131], [300, 600], [1000, 5]], ids=str)
def test_block_mask_with_extra_masks_covers_create_block_mask(lengths: list[int]) -> None:
    """With groups / cone nothing is marked full, and every block with an allowed pair is listed."""
    layout, _ = make_case(lengths, window=50, groups=True, cone=1.0)
    fast, slow = _tables(build_block_mask(layout, "cpu")), _tables(build_block_mask_eager(layout, "cpu"))
    assert not fast["kv"][1].any()
    needed = slow["kv"][0] | slow["kv"][1]
    assert not (needed & ~fast["kv"][0]).any()
    # ... and nothing the window alone would exclude
    window_only = _tables(build_block_mask_eager(AttentionLayout.from_lengths(lengths, window=50), "cpu"))
    assert not (fast["kv"][0] & ~(window_only["kv"][0] | window_only["kv"][1])).any()


def test_padded_length_buckets() -> None:
    got = [padded_length(n) for n in (0, 1, 128, 129, 1024, 1025, 1200)]
    assert got == [128, 128, 128, 256, 1024, 1280, 1280]
    for n in range(1, 300_000, 997):
        p = padded_length(n)
        assert p >= n and p % BLOCK == 0 and (p - n <= 127 or p <= 1.25 * n + BLOCK)
    assert len({padded_length(n) for n in range(1, 131_073)}) <= 8 + 4 * 7


# --- compiled FlexAttention on CPU (the block tables only matter when compiled) --------------------------


def test_flex_compiled_cpu_matches_reference_without_recompiling() -> None:
    """One compile (~5–15 s on CPU); then other lengths in the same bucket must not recompile."""
    cases = [[13, 1, 131, 0, 257], [450, 2], [1, 500], [129, 129, 129]]
    assert len({padded_length(sum(c)) for c in cases}) == 1
    for i, lengths in enumerate(cases):
        layout, (q, k, v) = make_case(lengths, window=20, seed=i)
        ref = attend(q, k, v, layout, backend="reference", scale=0.25)
        with torch._dynamo.config.patch(error_on_recompile=i > 0):
            out = flex_attention_with_mask(q.float(), k.float(), v.float(), build_block_mask(layout, "cpu"),
                                           0.25, compiled=True)
        torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", ["reference", "dense", "flex", "local"])
def test_views_of_a_fused_projection_equal_contiguous_inputs(backend: str) -> None:
    """The encoder hands attend() q, k, v as views of one (N, 3, H, D) projection: every backend must give
    what it gives on contiguous copies (``local`` reads the strides, the others get copies in ``attend``)."""
    layout, _ = make_case([37, 0, 131], window=9)
    g = torch.Generator().manual_seed(5)
    qkv = torch.randn(168, 3, 2, 16, generator=g, dtype=torch.float32)
    q, k, v = qkv.unbind(1)
    assert not q.is_contiguous()
    grad = backend in ("reference", "dense", "local")  # flex has no backward on CPU
    views = qkv.clone().requires_grad_(grad)
    copies = [t.clone().contiguous().requires_grad_(grad) for t in (q, k, v)]
    out_views = attend(*views.unbind(1), layout, backend=backend)
    out_copies = attend(*copies, layout, backend=backend)
    torch.testing.assert_close(out_views, out_copies, atol=1e-6, rtol=1e-5)
    if grad:
        w = torch.randn(out_views.shape, generator=g)
        (out_views * w).sum().backward()
        (out_copies * w).sum().backward()
        for i, t in enumerate(copies):
            torch.testing.assert_close(views.grad[:, i], t.grad, atol=1e-6, rtol=1e-5)


def test_attend_hands_contiguous_tensors_to_backends_outside_strided(monkeypatch: pytest.MonkeyPatch) -> None:
    """The views test above cannot see a missing copy for backends that accept views anyway; a registered
    backend that records what it receives can: outside ``api.STRIDED`` contiguous, inside it the views."""
    seen: list[bool] = []

    def record(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout, scale: float):
        seen.append(all(t.is_contiguous() for t in (q, k, v)))
        return torch.zeros_like(q)

    monkeypatch.setitem(api._BACKENDS, "recorder", (record, lambda q, layout, grad: None))
    layout, _ = make_case([11, 4], window=3)
    q, k, v = torch.randn(15, 3, 2, 16).unbind(1)
    attend(q, k, v, layout, backend="recorder")
    monkeypatch.setattr(api, "STRIDED", frozenset({"recorder"}))
    attend(q, k, v, layout, backend="recorder")
    assert seen == [True, False]


def test_an_unknown_backend_name_is_blamed_on_who_asked() -> None:
    from trackformers.attention.api import check_backend_name
    from trackformers.errors import InputError
    from trackformers.inference import CHECKPOINT_DIR
    from trackformers.training.module import TrackingModule

    check_backend_name("auto", "--backend auto")
    check_backend_name("reference", "--backend reference")
    with pytest.raises(InputError, match=r"^--backend nope: unknown attention backend; expected auto or one of "):
        check_backend_name("nope", "--backend nope")
    # the override is checked before the file: the message names the override, not the checkpoint
    with pytest.raises(InputError, match=r"^attention backend override 'nope': unknown"):
        TrackingModule.load_checkpoint(CHECKPOINT_DIR / "best.ckpt", backend="nope")
