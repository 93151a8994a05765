"""Per-hit heads (tasks), each with its own loss and hits → tracks step (see :mod:`.base`)."""

from trackformers.models.tasks.base import Task, cluster_per_event
from trackformers.models.tasks.classification import ClassificationTask
from trackformers.models.tasks.condensation import CondensationTask
from trackformers.models.tasks.embedding import EmbeddingTask
from trackformers.models.tasks.hit_filter import HitFilterTask
from trackformers.models.tasks.regression import RegressionTask

__all__ = [
    "ClassificationTask",
    "CondensationTask",
    "EmbeddingTask",
    "HitFilterTask",
    "RegressionTask",
    "Task",
    "cluster_per_event",
]
