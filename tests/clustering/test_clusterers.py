"""Clusterers against known answers (separated blobs), noise handling, and condensation vs its reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackformers.clustering import (
    CondensationClusterer,
    DBSCANClusterer,
    GPUClusterer,
    HDBSCANClusterer,
    compact,
    make_clusterer,
    same_partition,
)
from trackformers.clustering.condensation import reference_condensation
from trackformers.errors import InputError


def blobs(n_blobs: int = 12, dim: int = 4, seed: int = 0, noise: int = 0):
    """Blobs of 3..9 points (spread 0.01) on a grid of spacing 1, plus isolated noise points; shuffled."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(4)] * dim, indexing="ij"), -1).reshape(-1, dim)
    centres = grid[rng.choice(len(grid), n_blobs + noise, replace=False)].astype(np.float64)
    xs, truth = [], []
    for b in range(n_blobs):
        m = int(rng.integers(3, 10))
        xs.append(centres[b] + rng.normal(0, 0.01, (m, dim)))
        truth += [b] * m
    for j in range(noise):  # isolated points, far from the blobs and from each other
        xs.append(50.0 + 10.0 * centres[n_blobs + j][None])
        truth.append(-1)
    x, truth = np.concatenate(xs), np.array(truth)
    perm = rng.permutation(len(x))
    return torch.from_numpy(x[perm]), torch.from_numpy(truth[perm])


def expected(truth: torch.Tensor) -> torch.Tensor:
    return compact(truth)  # noise → singletons


CLUSTERERS = {
    "dbscan": DBSCANClusterer(eps=0.2, min_samples=2),
    "hdbscan": HDBSCANClusterer(min_cluster_size=3),
    "gpu": GPUClusterer(radius=0.2, k=None, window=None),
    "gpu_knn": GPUClusterer(radius=0.2, k=4, window=None),
}


@pytest.mark.parametrize("name", sorted(CLUSTERERS))
@pytest.mark.parametrize("noise", [0, 1, 5])
def test_blobs_exact_labels(name: str, noise: int) -> None:
    if name == "hdbscan" and noise > 1:
        pytest.skip("HDBSCAN is scale-free: several far-apart outliers form a sparse cluster of their own")
    x, truth = blobs(seed=len(name) + noise, noise=noise)
    labels = CLUSTERERS[name](x)
    assert labels.dtype == torch.int64 and labels.shape == (len(x),)
    assert bool((labels >= 0).all())
    assert same_partition(labels, expected(truth))
    assert set(labels.tolist()) == set(range(int(labels.max()) + 1))  # consecutive ids


def test_condensation_blobs() -> None:
    x, truth = blobs(seed=3, noise=4)
    gen = torch.Generator().manual_seed(0)
    beta = torch.rand(len(x), generator=gen, dtype=torch.float64) * 0.4  # below t_beta ...
    for b in truth.unique().tolist():
        if b >= 0:  # ... except one point per blob
            beta[torch.nonzero(truth == b)[0, 0]] = 0.9
    labels = CondensationClusterer(t_beta=0.5, t_d=0.3)(x, beta=beta)
    assert same_partition(labels, expected(truth))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 61, 257])
@pytest.mark.parametrize("block", [1, 16, 512])
def test_condensation_matches_reference(n: int, block: int) -> None:
    gen = torch.Generator().manual_seed(n * 7 + block)
    x = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    beta = torch.rand(n, generator=gen, dtype=torch.float64)
    for t_beta, t_d in [(0.5, 0.2), (0.1, 0.35), (0.9, 0.05)]:
        got = CondensationClusterer(t_beta=t_beta, t_d=t_d, block=block)(x, beta=beta)
        ref = reference_condensation(x.numpy(), beta.numpy(), t_beta, t_d)
        assert same_partition(got, compact(torch.from_numpy(ref)))


def test_condensation_needs_beta() -> None:
    with pytest.raises(InputError, match="beta"):
        CondensationClusterer()(torch.zeros(3, 2))


@pytest.mark.parametrize("name", ["dbscan", "hdbscan", "condensation", "gpu"])
@pytest.mark.parametrize("n", [0, 1])
def test_tiny_inputs(name: str, n: int) -> None:
    x = torch.zeros(n, 3)
    labels = make_clusterer(name)(x, beta=torch.ones(n))
    assert labels.tolist() == list(range(n))


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match=r"expected a floating tensor \(N, D\)"):
        DBSCANClusterer()(torch.zeros(4))
    with pytest.raises(InputError, match="beta has shape"):
        GPUClusterer()(torch.zeros(4, 2), beta=torch.zeros(3))
    with pytest.raises(InputError, match="unknown clusterer 'kmeans'"):
        make_clusterer("kmeans")


def test_compact_and_same_partition() -> None:
    labels = torch.tensor([5, -1, 5, 9, -1, 2])
    out = compact(labels)
    assert out.tolist()[0] == out.tolist()[2] and len(set(out.tolist())) == 5
    assert same_partition(torch.tensor([0, 0, 1]), torch.tensor([7, 7, 3]))
    assert not same_partition(torch.tensor([0, 0, 1]), torch.tensor([7, 3, 3]))
    assert not same_partition(torch.tensor([0, 1, 2]), torch.tensor([0, 0, 2]))


def test_hdbscan_epsilon_bug_gives_one_sentence() -> None:
    """27 embedding rows (from a μ = 20 event) on which scikit-learn's epsilon search raises a TypeError under
    NumPy 2 (scikit-learn #33219): our clusterer says so in one sentence; with epsilon 0 it clusters them."""
    from pathlib import Path

    from trackformers.clustering.sklearn_clusterers import HDBSCANClusterer

    x = torch.from_numpy(np.load(Path(__file__).parent / "data" / "hdbscan_epsilon_trigger.npy"))
    labels = HDBSCANClusterer(min_cluster_size=3, min_samples=2)(x)
    assert labels.shape == (27,) and int(labels.min()) >= 0
    try:
        eps = HDBSCANClusterer(min_cluster_size=3, min_samples=2, cluster_selection_epsilon=0.1)(x)
    except InputError as err:  # scikit-learn with the bug
        assert "#33219" in str(err) and "cluster_selection_epsilon=0" in str(err)
    else:  # a fixed scikit-learn: merging clusters closer than epsilon never splits one
        assert eps.shape == (27,) and int(eps.max()) <= int(labels.max())
