"""φ-sort helpers: per-event sort of a packed batch and its inverse, against a per-event numpy sort."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackformers.attention.sorting import event_ids, invert_permutation, phi_sort


def _cu(lengths: list[int]) -> torch.Tensor:
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32), 0)
    return cu


@pytest.mark.parametrize("lengths", [[1], [2, 0, 13], [131, 1, 257, 0], [0], [5, 7, 3]])
def test_phi_sort_matches_per_event_sort(lengths: list[int]) -> None:
    g = torch.Generator().manual_seed(sum(lengths))
    n = sum(lengths)
    phi = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * np.pi
    cu = _cu(lengths)
    perm, inverse = phi_sort(phi, cu)
    assert perm.dtype == torch.int64 and perm.shape == (n,)
    expected = []
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        expected.append(s + np.argsort(phi[s:e].numpy(), kind="stable"))
    expected = np.concatenate(expected) if expected else np.zeros(0, np.int64)
    np.testing.assert_array_equal(perm.numpy(), expected)
    np.testing.assert_array_equal(phi[perm][inverse].numpy(), phi.numpy())
    # sorted within each event, and events stay in their segments
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        assert torch.all(phi[perm][s:e].diff() >= 0)
        assert set(perm[s:e].tolist()) == set(range(s, e))


def test_phi_sort_ties_are_stable() -> None:
    phi = torch.tensor([0.5, -1.0, 0.5, 0.5, -1.0, 2.0], dtype=torch.float32)
    perm, _ = phi_sort(phi, _cu([4, 2]))
    assert perm.tolist() == [1, 0, 2, 3, 4, 5]


def test_phi_sort_rejects_inconsistent_offsets() -> None:
    with pytest.raises(ValueError, match="cu_seqlens"):
        phi_sort(torch.zeros(5), _cu([2, 2]))
    with pytest.raises(ValueError, match="1-D"):
        phi_sort(torch.zeros(5, 1), _cu([5]))


def test_event_ids_and_inverse() -> None:
    assert event_ids(_cu([2, 0, 3, 1])).tolist() == [0, 0, 2, 2, 2, 3]
    assert event_ids(_cu([])).tolist() == []
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    inv = invert_permutation(perm)
    assert torch.equal(perm[inv], torch.arange(50)) and torch.equal(inv[perm], torch.arange(50))
