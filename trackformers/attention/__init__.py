"""Attention over packed, φ-sorted hits: one entry point, several backends (see :mod:`.api`)."""

from trackformers.attention.api import (
    AttentionLayout,
    BackendUnavailable,
    attend,
    backends,
    can_run,
    register,
)

__all__ = ["AttentionLayout", "BackendUnavailable", "attend", "backends", "can_run", "register"]
