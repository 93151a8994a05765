"""``trackformers fit`` with Lightning DDP over two CPU processes (gloo): the multi-GPU training path of the
Lightning CLI, run where CI can (the multi-GPU run itself needs a machine with several GPUs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
MAX_STEPS = 4


@pytest.mark.slow
def test_fit_with_two_gloo_processes(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "trackformers", "fit", "--config", str(ROOT / "configs" / "tiny_cpu.yaml"),
        f"--trainer.max_steps={MAX_STEPS}", "--trainer.limit_val_batches=0", "--trainer.logger=false",
        "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={tmp_path}",
        "--data.num_workers=0", "--data.n_val_events=1",
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
        "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.save_last=true",
        f"--trainer.callbacks.dirpath={tmp_path / 'ckpt'}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRITON_INTERPRET": "0"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stdout + done.stderr
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == MAX_STEPS
