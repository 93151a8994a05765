"""The torch windowed-graph clusterer against plain NumPy/SciPy/scikit-learn references (on CPU tensors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackformers.clustering import GPUClusterer, connected_components, same_partition, window_graph
from trackformers.clustering.gpu import reference_window_clusters


def random_points(n: int, seed: int, dim: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, dim, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 31, 97])
@pytest.mark.parametrize("window", [None, 1, 2, 5, 48])
@pytest.mark.parametrize("k", [None, 1, 3])
def test_matches_reference(n: int, window: int | None, k: int | None) -> None:
    x = random_points(n, seed=n * 31 + (window or 0) * 7 + (k or 0))
    for radius in (0.15, 0.3):
        # A tiny max_elements forces many chunks, including a ragged last one.
        got = GPUClusterer(radius=radius, k=k, window=window, max_elements=50)(x)
        ref = reference_window_clusters(x.numpy(), radius, window, k)
        assert got.dtype == torch.int64 and got.shape == (n,)
        assert same_partition(got, torch.from_numpy(ref)), (radius, window, k)


@pytest.mark.parametrize("n", [2, 13, 211])
def test_full_window_equals_sklearn_radius_graph(n: int) -> None:
    from scipy.sparse.csgraph import connected_components as scipy_cc
    from sklearn.neighbors import radius_neighbors_graph

    x = random_points(n, seed=n, dim=2)
    ref = scipy_cc(radius_neighbors_graph(x.numpy(), 0.08), directed=False)[1]
    got = GPUClusterer(radius=0.08, k=None, window=None)(x)
    assert same_partition(got, torch.from_numpy(ref))


def test_seam_of_the_phi_order_is_linked() -> None:
    # Points on a circle in φ order; the group around φ = ±π spans the last and first rows.
    phi = torch.tensor([-3.10, -3.05, -1.0, 0.0, 1.0, 3.08, 3.12], dtype=torch.float64)
    x = torch.stack([phi.cos(), phi.sin()], 1)
    labels = GPUClusterer(radius=0.1, k=None, window=1)(x)
    assert same_partition(labels, torch.tensor([0, 0, 1, 2, 3, 0, 0]))
    # Without the cyclic wrap, window=1 could not join row 0 to row 6.
    src, dst = window_graph(x, 0.1, window=1)
    assert {(int(a), int(b)) for a, b in zip(src, dst)} >= {(6, 0)}


def test_phi_argument_sorts_and_unsorts() -> None:
    gen = torch.Generator().manual_seed(5)
    n = 101
    phi = torch.rand(n, generator=gen) * 6.28 - 3.14
    x = torch.rand(n, 3, generator=gen)
    perm = torch.randperm(n, generator=gen)
    clusterer = GPUClusterer(radius=0.3, k=2, window=4)
    sorted_labels = clusterer(x[torch.argsort(phi)])
    expected = torch.empty_like(sorted_labels).scatter_(0, torch.argsort(phi), sorted_labels)
    got = clusterer(x[perm], phi=phi[perm])
    assert same_partition(got, expected[perm])


def test_connected_components_long_chain() -> None:
    # A path visited in scrambled order: propagation plus pointer jumping must still collapse it.
    n = 1000
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    src, dst = perm[:-1], perm[1:]
    labels = connected_components(src, dst, n + 3)
    assert labels[:n].unique().numel() == 1 and labels[n:].tolist() == [n, n + 1, n + 2]


def test_known_answer_two_tracks_interleaved() -> None:
    # Two tracks interleaved in φ order, far apart in the embedding.
    x = torch.tensor([[0.0, 0], [5, 5], [0.05, 0], [5.05, 5], [0.1, 0], [9, 9]])
    labels = GPUClusterer(radius=0.1, k=4, window=2)(x)
    assert same_partition(labels, torch.tensor([0, 1, 0, 1, 0, 2]))
    assert np.array_equal(np.sort(labels.unique().numpy()), np.arange(3))


@pytest.mark.gpu
@pytest.mark.parametrize(("window", "k"), [(None, None), (64, None), (64, 4), (1024, 8)])
def test_cuda_matches_cpu(window: int | None, k: int | None) -> None:
    from trackformers.clustering import CondensationClusterer

    x = random_points(20011, seed=3, dim=8)  # float64: no TF32 rounding differences between devices
    phi = torch.rand(len(x), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    clusterer = GPUClusterer(radius=0.25, k=k, window=window)
    got = clusterer(x.cuda(), phi=phi.cuda())
    assert got.device.type == "cuda"
    assert same_partition(got.cpu(), clusterer(x, phi=phi))
    beta = phi
    cond = CondensationClusterer(t_beta=0.5, t_d=0.3)
    assert same_partition(cond(x.cuda(), beta=beta.cuda()).cpu(), cond(x, beta=beta))
