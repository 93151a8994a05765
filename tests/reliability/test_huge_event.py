"""Huge events on CPU, at small scale: which attention path scales, and a clear error when the chosen one does not.

The 500k-hit measurement itself is ``benchmarks/huge_event.py`` (minutes, GBs: not a test). Here: an event just
above the dense backend's mask limit (16 384 hits) shows that ``auto`` selects the ``local`` backend for CPU
inference and training (without Triton it runs the banded torch path, O(N·w)), and that a checkpoint pinned
to ``dense`` ends in one ``InputError`` line pointing to ``--backend auto`` instead of a traceback or an L×L
allocation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trackformers.attention import api
from trackformers.cli import main
from trackformers.io import write_events
from trackformers.simulation import simulate_event
from trackformers.training.module import TrackingModule

#: One hit more than the dense backend's largest mask: sqrt(2**28) = 16384.
N_HITS = 16_411  # prime


def auto_choice(n: int, *, needs_grad: bool) -> str:
    """The backend ``attend(backend="auto")`` would run for one CPU event of ``n`` hits (2 heads of 16)."""
    q = torch.zeros(n, 2, 16)
    layout = api.AttentionLayout.from_lengths([n], window=64)
    return next(name for name in api.AUTO_ORDER
                if name in api.backends() and api.can_run(name, q, layout, needs_grad=needs_grad) is None)


def test_auto_on_cpu_is_banded_above_the_dense_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # As in a user's shell: no Triton interpreter (tests/conftest.py turns it on for the kernel tests), so the
    # local backend runs its banded torch path on CPU tensors.
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert auto_choice(1000, needs_grad=False) == "local"
    assert auto_choice(1000, needs_grad=True) == "local"
    assert api.can_run("dense", torch.zeros(N_HITS, 2, 16), api.AttentionLayout.from_lengths([N_HITS]),
                       needs_grad=False) is not None
    assert auto_choice(N_HITS, needs_grad=False) == "local"
    assert auto_choice(524_073, needs_grad=False) == "local"


@pytest.fixture(scope="module")
def big_event_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pileup = 40.0  # μ = 40, all volumes: 16 819 hits, a little above the limit
    event = simulate_event(seed=11, pileup=pileup, event_id=7)
    assert len(event.hits) > 16_384, len(event.hits)
    return write_events([event], tmp_path_factory.mktemp("big") / "big.parquet", format="parquet")[0]


def test_dense_checkpoint_on_a_big_event_is_a_clear_error(big_event_file: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    module = TrackingModule(
        encoder={"class_path": "trackformers.models.encoder.Encoder",
                 "init_args": {"d_model": 16, "n_heads": 1, "n_layers": 1, "backend": "dense", "window": 8}},
        task={"class_path": "trackformers.models.tasks.EmbeddingTask", "init_args": {"dim": 4}},
    )
    ckpt = module.export_checkpoint(tmp_path / "dense.ckpt")
    out = tmp_path / "out"
    status = main(["reconstruct", str(big_event_file), "--checkpoint", str(ckpt), "--out", str(out),
                   "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "event 7" in err and "--backend auto" in err
    assert not out.exists() or not any(out.rglob("*.parquet")) and not any(out.rglob("*.csv"))
