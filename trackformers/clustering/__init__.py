"""Track building: per-hit embeddings (or condensation outputs) → one int64 track id per hit.

``Clusterer`` is the protocol; implementations: :class:`DBSCANClusterer`, :class:`HDBSCANClusterer`
(scikit-learn, CPU), :class:`CondensationClusterer` (object condensation, torch) and :class:`GPUClusterer`
(windowed radius graph + connected components, torch on any device). ``make_clusterer(name, **params)`` builds
one by name; :mod:`trackformers.clustering.tuning` scans their hyper-parameters on validation events.
"""

from trackformers.clustering.condensation import CondensationClusterer
from trackformers.clustering.gpu import GPUClusterer, connected_components, window_graph
from trackformers.clustering.protocol import (
    Clusterer,
    compact,
    make_clusterer,
    names,
    register,
    same_partition,
)
from trackformers.clustering.sklearn_clusterers import DBSCANClusterer, HDBSCANClusterer

__all__ = [
    "Clusterer", "CondensationClusterer", "DBSCANClusterer", "GPUClusterer", "HDBSCANClusterer", "compact",
    "connected_components", "make_clusterer", "names", "register", "same_partition", "window_graph",
]
