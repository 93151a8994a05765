"""Training killed with SIGKILL mid-epoch and restarted with the same command ends in the same state.

``trackformers fit --config configs/tiny_cpu.yaml ... --ckpt_path last`` runs as a subprocess (one CPU thread,
no DataLoader workers, so the run is deterministic). It is killed as soon as its first checkpoint exists, then
the identical command is run again: it must pick up ``last.ckpt`` and finish with the same global step and
bit-identical weights (and optimiser moments) as one uninterrupted run of the same command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
MAX_STEPS = 12
EVERY = 4  # steps between checkpoints


def command(root: Path) -> list[str]:
    """The one command, run unchanged for the first attempt, the restart and the reference run."""
    return [
        sys.executable, "-m", "trackformers", "fit", "--config", str(ROOT / "configs" / "tiny_cpu.yaml"),
        f"--trainer.max_steps={MAX_STEPS}", "--trainer.limit_val_batches=0", "--trainer.logger=false",
        "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={root}",
        "--data.num_workers=0", "--data.n_val_events=1",
        "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.save_last=true",
        f"--trainer.callbacks.every_n_train_steps={EVERY}", "--trainer.callbacks.save_top_k=-1",
        "--ckpt_path=last",
    ]


def environment() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0",
               CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def run(root: Path) -> None:
    done = subprocess.run(command(root), cwd=root.parent, env=environment(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def tail(path: Path) -> str:
    return path.read_text()[-3000:]


def final_state(root: Path) -> dict:
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt


def test_sigkill_then_restart_matches_uninterrupted_run(tmp_path: Path) -> None:
    killed_root = tmp_path / "killed"
    # The reference run (never interrupted) goes alongside: the two are independent processes.
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("straight", "killed")}  # noqa: SIM115
    straight = subprocess.Popen(command(tmp_path / "straight"), cwd=tmp_path, env=environment(),
                                stdout=subprocess.DEVNULL, stderr=logs["straight"])
    try:
        proc = subprocess.Popen(command(killed_root), cwd=tmp_path, env=environment(),
                                stdout=subprocess.DEVNULL, stderr=logs["killed"])
        last = killed_root / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 240
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "training ended before it could be killed: " + tail(tmp_path / "killed.log")
        assert last.exists(), "no checkpoint within the time limit"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        interrupted_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
        assert 0 < interrupted_at < MAX_STEPS, "the kill must land mid-training"
        for old in (killed_root / "checkpoints").glob("epoch=*.ckpt"):
            old.unlink()  # a restart from scratch would write these again; a resumed run only later ones

        run(killed_root)  # the same command again: resumes from last.ckpt
        assert straight.wait(timeout=300) == 0, tail(tmp_path / "straight.log")
    finally:
        if straight.poll() is None:  # a failed assertion must not leave the reference run behind
            straight.kill()
            straight.wait()
        for log in logs.values():
            log.close()

    resumed, reference = final_state(killed_root), final_state(tmp_path / "straight")
    assert resumed["global_step"] == reference["global_step"] == MAX_STEPS
    assert resumed["state_dict"].keys() == reference["state_dict"].keys()
    for key, value in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    (opt_a,), (opt_b,) = resumed["optimizer_states"], reference["optimizer_states"]
    for p, state in opt_b["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(opt_a["state"][p][name]), torch.as_tensor(value)), (p, name)
    # The restart really resumed: it wrote no checkpoint for a step before the interruption.
    steps = sorted(int(p.stem.split("step=")[1]) for p in (killed_root / "checkpoints").glob("epoch=*.ckpt"))
    assert steps and steps[0] > interrupted_at and steps[-1] == MAX_STEPS, steps
