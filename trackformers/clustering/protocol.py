"""The track-building interface: per-hit vectors in, one int64 track id per hit out.

Every implementation follows :class:`Clusterer`: ``labels = clusterer(x, beta=beta)`` with ``x`` a float
tensor ``(N, D)`` (an embedding, or object-condensation cluster coordinates) and the optional condensation
strength ``beta`` ``(N,)``. ``labels`` is ``(N,)`` int64 on ``x``'s device with consecutive ids ``0..K-1``;
no hit is ever left out (noise and outliers get singleton ids, never -1), so a submission built from the
labels holds every hit exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from trackformers.errors import InputError


@runtime_checkable
class Clusterer(Protocol):
    """Hits → track ids. ``x`` is ``(N, D)`` float, ``beta`` ``(N,)`` or None; returns ``(N,)`` int64."""

    def __call__(self, x: Tensor, *, beta: Tensor | None = None) -> Tensor: ...


def check_inputs(x: Tensor, beta: Tensor | None, who: str) -> None:
    """Raise :class:`InputError` unless ``x`` is ``(N, D)`` floating and ``beta`` is ``(N,)`` (or None)."""
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{who}: x has shape/type {shape}; expected a floating tensor (N, D).")
    if beta is not None and (not isinstance(beta, Tensor) or beta.shape != (x.shape[0],)):
        shape = tuple(beta.shape) if isinstance(beta, Tensor) else type(beta).__name__
        raise InputError(f"{who}: beta has shape {shape}; expected ({x.shape[0]},) like x's rows.")


def compact(labels: Tensor) -> Tensor:
    """Renumber labels to consecutive ids ``0..K-1``; negative labels (noise) become singleton ids.

    Args:
        labels: ``(N,)`` integer labels, ``-1`` (or any negative) meaning "no cluster".
    Returns:
        ``(N,)`` int64, same device; clusters keep their members, each noise hit gets its own id.
    """
    labels = labels.to(torch.int64)
    if labels.numel() == 0:
        return labels
    noise = labels < 0
    if bool(noise.any()):
        # Singleton ids placed above every real label, so they can never collide with a cluster.
        top = labels.max().clamp(min=0) + 1
        labels = torch.where(noise, top + torch.cumsum(noise.to(torch.int64), 0) - 1, labels)
    return torch.unique(labels, return_inverse=True)[1].to(torch.int64)


def same_partition(a: Tensor, b: Tensor) -> bool:
    """True iff two labelings group the hits identically (equal up to renaming the ids)."""
    if a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    a, b = a.cpu().to(torch.int64), b.cpu().to(torch.int64)
    pairs = torch.unique(torch.stack([a, b], 1), dim=0)
    return len(pairs) == len(torch.unique(a)) == len(torch.unique(b))


_REGISTRY: dict[str, Callable[..., Clusterer]] = {}


def register(name: str, factory: Callable[..., Clusterer]) -> None:
    """Make a clusterer available by name to :func:`make_clusterer` (and the CLI's ``--clusterer``)."""
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Registered clusterer names."""
    return sorted(_REGISTRY)


def _factory(name: str) -> Any:
    """The registered factory of clusterer ``name``; InputError for an unknown name."""
    if name not in _REGISTRY:
        raise InputError(f"unknown clusterer '{name}'; expected one of {', '.join(names())}.")
    return _REGISTRY[name]


def parameters(name: str) -> list[str]:
    """The hyper-parameters (keyword arguments) of the registered clusterer ``name``."""
    import inspect

    return list(inspect.signature(_factory(name)).parameters)


def make_clusterer(name: str, **params: Any) -> Clusterer:
    """Build a registered clusterer by name (``dbscan``, ``hdbscan``, ``condensation``, ``gpu``)."""
    factory = _factory(name)
    try:
        return factory(**params)
    except TypeError as err:
        raise InputError(f"clusterer '{name}': bad parameters {params}: {err}.") from None
