"""The banded plain-torch CPU path of the ``local`` backend against the float64 reference, fwd and bwd."""

from __future__ import annotations

import pytest
import torch

from trackformers.attention import AttentionLayout, attend
from trackformers.attention.local import band
from trackformers.attention.local.band import band_attention
from trackformers.attention.reference import reference_attention

CASES = [
    ([300, 1, 0, 257, 131], 5, False),  # primes, an empty and a 1-hit event, several blocks per event
    ([1000, 401], 60, True),  # groups
    ([13, 7], None, False),  # no window: whole events
    ([2 * 64 + 128 + 1], 64, False),  # BLOCK + 2w = L - 1: banded path, keys right at the seam
    ([2 * 64 + 128], 64, True),  # BLOCK + 2w = L: the last length on the banded path
    ([2 * 64 + 127], 64, False),  # BLOCK + 2w > L: whole-event path with the circular mask
    ([777, 3001], 0, False),  # w = 0: each hit sees itself
]


@pytest.mark.parametrize(("lengths", "w", "groups"), CASES)
def test_band_matches_reference(lengths: list[int], w: int | None, groups: bool) -> None:
    gen = torch.Generator().manual_seed(sum(lengths) + (w or 0))
    n = sum(lengths)
    layout = AttentionLayout.from_lengths(
        lengths, window=w, groups=torch.randint(0, 3, (n,), generator=gen) if groups else None)
    q, k, v = (torch.randn(n, 2, 16, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(3))
    ref = reference_attention(q, k, v, layout, 0.3)
    out = band_attention(q, k, v, layout, 0.3)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grad = torch.randn(ref.shape, dtype=ref.dtype, generator=gen)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), grad), torch.autograd.grad(ref, (q, k, v), grad)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_small_chunks_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunking bounds memory only: one block per chunk equals the default chunking."""
    layout = AttentionLayout.from_lengths([1201, 389], window=40)
    q, k, v = (torch.randn(1590, 4, 32) for _ in range(3))
    full = band_attention(q, k, v, layout, 0.2)
    monkeypatch.setattr(band, "CHUNK_ELEMENTS", 1)
    torch.testing.assert_close(band_attention(q, k, v, layout, 0.2), full)


def test_local_backend_uses_the_band_on_a_cpu_without_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    layout = AttentionLayout.from_lengths([517, 3], window=30)
    q, k, v = (torch.randn(520, 2, 8, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(attend(q, k, v, layout, backend="local"),
                               reference_attention(q, k, v, layout, 8 ** -0.5))
