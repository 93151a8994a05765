"""The GPU clusterer's pieces against plain references: the band-wise radius graph (edge sets) and the
hooking connected components (exact labels), on CPU tensors; the same on CUDA when present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackformers.clustering import GPUClusterer, connected_components, window_graph
from trackformers.clustering.gpu import reference_window_clusters


def reference_pairs(x: np.ndarray, radius: float, window: int | None) -> set[tuple[int, int]]:
    """Unordered pairs {i, j}, i != j, within cyclic position distance ``window`` and embedding ``radius``."""
    n = len(x)
    w = n if window is None else window
    out = set()
    for i in range(n):
        for j in range(i + 1, n):
            cyc = min(j - i, n - (j - i))
            if cyc <= w and ((x[i] - x[j]) ** 2).sum() <= radius * radius:
                out.add((i, j))
    return out


def as_pairs(src: torch.Tensor, dst: torch.Tensor) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in zip(src.tolist(), dst.tolist())}


def reference_components(src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    """Component id = smallest node index of the component (SciPy connected components, relabelled)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_cc

    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    comp = scipy_cc(graph, directed=False)[1]
    smallest = np.full(comp.max() + 1 if n else 0, n, np.int64)
    np.minimum.at(smallest, comp, np.arange(n))
    return smallest[comp]


@pytest.mark.parametrize("n", [2, 3, 5, 17, 97, 211])
@pytest.mark.parametrize("window", [1, 2, 7, "half", "n-1", "n", "n+5", None])
@pytest.mark.parametrize("max_elements", [50, 1 << 24])
def test_band_graph_edges_equal_reference(n: int, window: object, max_elements: int) -> None:
    w = {"half": n // 2, "n-1": n - 1, "n": n, "n+5": n + 5}.get(window, window)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(n * 13 + (w or 0))
    x = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    src, dst = window_graph(x, 0.3, w, max_elements=max_elements)
    assert src.dtype == dst.dtype == torch.int64
    assert bool((src != dst).all()) and bool(((src >= 0) & (src < n) & (dst >= 0) & (dst < n)).all())
    assert as_pairs(src, dst) == reference_pairs(x.numpy(), 0.3, w)
    if w is not None and 2 * w < n:  # each pair once
        assert len(src) == len(as_pairs(src, dst))


def test_band_graph_links_across_the_seam_and_ragged_last_block() -> None:
    # 11 rows, window 3, blocks of 2 rows (tiny max_elements): the last block has one padding row, and the
    # rows near the end link to the first rows through the wrap.
    x = torch.zeros(11, 2, dtype=torch.float64)
    x[:, 0] = torch.arange(11, dtype=torch.float64) * 10.0
    x[0, 0], x[10, 0] = 0.0, 0.05  # rows 0 and 10 are cyclic neighbours, close in the embedding
    src, dst = window_graph(x, 0.1, 3, max_elements=10)
    assert as_pairs(src, dst) == {(0, 10)}


@pytest.mark.parametrize("n", [1, 2, 13, 101, 1009])
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0, 3.0])
def test_connected_components_equal_scipy(n: int, density: float) -> None:
    gen = torch.Generator().manual_seed(n + int(10 * density))
    m = int(density * n)
    src = torch.randint(0, n, (m,), generator=gen)
    dst = torch.randint(0, n, (m,), generator=gen)  # self-loops and duplicates included
    got = connected_components(src, dst, n)
    assert got.dtype == torch.int64
    assert got.tolist() == reference_components(src.numpy(), dst.numpy(), n).tolist()


@pytest.mark.parametrize("seed", range(3))
def test_connected_components_scrambled_paths_and_stars(seed: int) -> None:
    # Long scrambled paths (deep trees for the hooking) next to stars (one hub, many leaves).
    gen = torch.Generator().manual_seed(seed)
    n = 3001
    perm = torch.randperm(n, generator=gen)
    paths = [perm[:1500], perm[1500:2900]]
    src = torch.cat([paths[0][:-1], paths[1][:-1], perm[2900].repeat(50)])
    dst = torch.cat([paths[0][1:], paths[1][1:], perm[2901:2951]])
    got = connected_components(src, dst, n)
    assert got.tolist() == reference_components(src.numpy(), dst.numpy(), n).tolist()


@pytest.mark.parametrize("n", [0, 1, 2, 53, 499])
@pytest.mark.parametrize("window", [1, 4, 40, None])
def test_labels_equal_reference_exactly(n: int, window: int | None) -> None:
    # Ids are numbered by each track's first row (in the rows' given order), like SciPy's labels.
    x = torch.rand(n, 4, generator=torch.Generator().manual_seed(n + (window or 0)), dtype=torch.float64)
    got = GPUClusterer(radius=0.35, window=window, max_elements=300)(x)
    assert got.tolist() == reference_window_clusters(x.numpy(), 0.35, window).tolist()


@pytest.mark.gpu
@pytest.mark.parametrize("n", [2, 1009, 57_131])
def test_cuda_graph_and_components_equal_cpu(n: int) -> None:
    x = torch.rand(n, 16, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    src, dst = window_graph(x.cuda(), 0.5, 1024)
    assert as_pairs(src.cpu(), dst.cpu()) == as_pairs(*window_graph(x, 0.5, 1024))
    assert torch.equal(connected_components(src, dst, n).cpu(), connected_components(src.cpu(), dst.cpu(), n))


def test_far_from_origin_the_exact_distance_decides() -> None:
    # |a|² ≈ 1e6 in float32: the product formula |a|² + |b|² − 2a·b cancels to garbage at the 0.06 level, far
    # above r² = 1e-6; the recomputed differences decide (pairs 0-1 at ~0.98e-3, 1-2 at ~2e-3 apart).
    x = torch.tensor([[1000.0, 0.0], [1000.0009765625, 0.0], [1000.0029296875, 0.0], [0.0, 1000.0]])
    src, dst = window_graph(x, 1e-3, 2)
    assert as_pairs(src, dst) == {(0, 1)}
    labels = GPUClusterer(radius=1e-3, window=2)(x)
    assert labels.tolist() == reference_window_clusters(x.numpy(), 1e-3, 2).tolist() == [0, 0, 1, 2]


def test_candidates_beyond_the_radius_become_self_loops() -> None:
    x = torch.rand(301, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    src, dst = window_graph(x, 0.2, 20, self_loops=True)
    real = src != dst
    assert as_pairs(src[real], dst[real]) == reference_pairs(x.numpy(), 0.2, 20)


@pytest.mark.parametrize("k", [None, 3])
def test_a_callers_autocast_does_not_lower_the_distance_precision(k: int | None) -> None:
    # Inside bf16 autocast (the model's inference context) matrix products would run in bf16 and link or
    # miss pairs near the radius; the clusterer computes in x's precision regardless.
    x = torch.nn.functional.normalize(torch.randn(3001, 16, generator=torch.Generator().manual_seed(2)), dim=1)
    x = x * 0.1 + torch.tensor([1.0] + [0.0] * 15)  # clustered far from the origin: many pairs near the radius
    clusterer = GPUClusterer(radius=0.1, k=k, window=64)
    want = clusterer(x)
    assert 100 < int(want.max()) < 2900  # a partition with many non-trivial tracks
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = clusterer(x)
        src, dst = window_graph(x, 0.1, 64, k)
    assert torch.equal(got, want)
    assert as_pairs(src, dst) == as_pairs(*window_graph(x, 0.1, 64, k))
