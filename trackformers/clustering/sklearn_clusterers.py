"""CPU track building with scikit-learn: DBSCAN and HDBSCAN on the per-hit embedding.

Both copy ``x`` to host memory, run the scikit-learn estimator and return the labels on ``x``'s device,
with noise hits (scikit-learn's -1) turned into singleton track ids by :func:`compact`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from trackformers.clustering.protocol import check_inputs, compact, register
from trackformers.errors import InputError


def _host(x: Tensor) -> np.ndarray:
    # float64 keeps scikit-learn's distance comparisons identical to a float64 reference.
    return x.detach().to("cpu", torch.float64).numpy()


@dataclass
class DBSCANClusterer:
    """DBSCAN in the embedding space (distances in embedding units).

    Args:
        eps: neighbourhood radius; two hits closer than this are neighbours.
        min_samples: neighbours (the hit included) a hit needs to be a core point; 1 makes every hit a core
            point, i.e. plain connected components of the eps-graph.
        n_jobs: scikit-learn worker threads (None = 1).
    """

    eps: float = 0.2
    min_samples: int = 2
    n_jobs: int | None = None

    def __call__(self, x: Tensor, *, beta: Tensor | None = None) -> Tensor:
        check_inputs(x, beta, "DBSCANClusterer")
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.int64, device=x.device)
        from sklearn.cluster import DBSCAN

        labels = DBSCAN(eps=self.eps, min_samples=self.min_samples, n_jobs=self.n_jobs).fit_predict(_host(x))
        return compact(torch.from_numpy(labels)).to(x.device)


@dataclass
class HDBSCANClusterer:
    """HDBSCAN in the embedding space: density clustering without a fixed radius.

    Args:
        min_cluster_size: smallest group of hits that counts as a track (>= 2).
        min_samples: core-distance neighbour count (None = ``min_cluster_size``).
        cluster_selection_epsilon: clusters closer than this (embedding units) are merged.
    """

    min_cluster_size: int = 2
    min_samples: int | None = None
    cluster_selection_epsilon: float = 0.0

    def __call__(self, x: Tensor, *, beta: Tensor | None = None) -> Tensor:
        check_inputs(x, beta, "HDBSCANClusterer")
        n = x.shape[0]
        if n < max(2, self.min_cluster_size):
            # HDBSCAN needs at least min_cluster_size points; too few hits are all singletons.
            return torch.arange(n, dtype=torch.int64, device=x.device)
        from sklearn.cluster import HDBSCAN

        est = HDBSCAN(min_cluster_size=self.min_cluster_size, min_samples=self.min_samples,
                      cluster_selection_epsilon=self.cluster_selection_epsilon, copy=True)
        try:
            labels = est.fit_predict(_host(x))
        except TypeError as err:
            if self.cluster_selection_epsilon > 0 and "0-dimensional" in str(err):
                import sklearn

                # scikit-learn's epsilon search indexes size-1 arrays as scalars, which NumPy 2 refuses.
                raise InputError(
                    f"HDBSCAN with cluster_selection_epsilon={self.cluster_selection_epsilon} failed inside "
                    f"scikit-learn {sklearn.__version__} with NumPy {np.__version__} (scikit-learn issue #33219); "
                    "use cluster_selection_epsilon=0 or the dbscan clusterer.") from None
            raise
        return compact(torch.from_numpy(labels)).to(x.device)


register("dbscan", DBSCANClusterer)
register("hdbscan", HDBSCANClusterer)
