"""Fixtures shared by the inference tests: the allocator setting undone after each test, a tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

#: An untrained whole-event (dense) embedding model: small enough for end-to-end CLI tests on a CPU.
TINY_MODEL = {
    "encoder": {"class_path": "trackformers.models.encoder.Encoder",
                "init_args": {"d_model": 16, "n_heads": 2, "n_layers": 1, "backend": "dense",
                              "window": None}},
    "task": {"class_path": "trackformers.models.tasks.EmbeddingTask", "init_args": {"dim": 4}},
}


@pytest.fixture(autouse=True)
def _allocator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """``reconstruct`` may set PYTORCH_CUDA_ALLOC_CONF (inference.prefer_expandable_segments): undo it after
    each test, so no test leaves the setting behind for the rest of the session."""
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "")
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TINY_MODEL checkpoint file (one per test module)."""
    from trackformers.training.module import TrackingModule

    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    return TrackingModule(**TINY_MODEL).export_checkpoint(path)
