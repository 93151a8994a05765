"""Every YAML in configs/: a couple of steps of ``fit``, then ``test`` from the saved checkpoint, on CPU.

Events are tiny (particle gun, μ = 0, pixel volumes); GPU configs run with CPU overrides of the attention
backend and the precision. The checkpoint written by ``fit`` must load with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trackformers.cli import main
from trackformers.training.module import TrackingModule

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
GPU_BACKENDS = ("local", "flex")


def overrides(config: Path, root: Path) -> list[str]:
    text = config.read_text()
    args = ["--trainer.accelerator=cpu", "--trainer.precision=32", "--trainer.max_steps=2",
            "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1",
            "--trainer.limit_test_batches=1",
            "--trainer.logger=false", "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={root}", "--data.pileup=0",
            '--data.simulation={"gun": 4}', "--data.n_val_events=1", "--data.n_test_events=1",
            "--data.max_hits_per_batch=200", "--data.num_workers=0"]
    if any(f"backend: {b}" in text for b in GPU_BACKENDS):
        args.append("--model.backend=dense")
    return args


def test_every_config_is_covered() -> None:
    names = {c.stem for c in CONFIGS}
    assert {"tiny_cpu", "embedding", "regression", "classification", "condensation", "hit_filter"} <= names
    for backend in ("reference", "dense", "flex", "local"):
        assert any(f"backend: {backend}" in c.read_text() for c in CONFIGS), backend
    for c in CONFIGS:
        assert "/work/" not in c.read_text() and "\n  default_root_dir: /" not in c.read_text()


@pytest.fixture
def one_thread():  # noqa: ANN201 - tiny matrices: threads only add overhead on a shared 2-core runner
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_fit_then_test(config: Path, tmp_path: Path, one_thread: None) -> None:
    args = overrides(config, tmp_path)
    assert main(["fit", "--config", str(config), *args]) == 0
    ckpts = sorted(tmp_path.rglob("*.ckpt"))
    assert ckpts, "fit wrote no checkpoint"
    module = TrackingModule.load_checkpoint(ckpts[-1])  # weights_only=True
    assert module.hparams["encoder"]["class_path"].startswith("trackformers.models.")
    assert main(["test", "--config", str(config), *args, f"--ckpt_path={ckpts[-1]}"]) == 0


def test_predict_tiny(tmp_path: Path, one_thread: None) -> None:
    config = Path(__file__).resolve().parents[2] / "configs" / "tiny_cpu.yaml"
    args = [*overrides(config, tmp_path), "--data.n_predict_events=1", "--trainer.limit_predict_batches=1"]
    assert main(["predict", "--config", str(config), *args]) == 0


def test_disallowed_class_path_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).resolve().parents[2] / "configs" / "tiny_cpu.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("trackformers.models.encoder.Encoder", "os.system"))
    assert main(["fit", "--config", str(bad), *overrides(config, tmp_path)]) == 2
    assert "os.system" in capsys.readouterr().err


def test_nested_override_reaches_init_args(tmp_path: Path, one_thread: None) -> None:
    config = Path(__file__).resolve().parents[2] / "configs" / "tiny_cpu.yaml"
    args = [*overrides(config, tmp_path), "--model.encoder.init_args.window=3"]
    assert main(["fit", "--config", str(config), *args]) == 0
    module = TrackingModule.load_checkpoint(sorted(tmp_path.rglob("*.ckpt"))[-1])
    assert module.encoder.window == 3 and module.hparams["encoder"]["init_args"]["window"] == 3


def test_a_missing_ckpt_path_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).resolve().parents[2] / "configs" / "tiny_cpu.yaml"
    missing = tmp_path / "checkpoints" / "LAST.ckpt"
    assert main(["test", "--config", str(config), *overrides(config, tmp_path), f"--ckpt_path={missing}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"trackformers: error: --ckpt_path {missing}: no such checkpoint file; expected a .ckpt written by "
        "trackformers fit (e.g. lightning_logs/version_0/checkpoints/epoch=0-step=50.ckpt), or best or last.")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # refused before the run wrote anything


def test_a_ckpt_path_folder_is_one_sentence(tmp_path: Path) -> None:
    from trackformers.errors import InputError
    from trackformers.training.cli import check_ckpt_path

    with pytest.raises(InputError, match=r"is a folder; expected a checkpoint file in it"):
        check_ckpt_path(tmp_path)
    check_ckpt_path("last")  # names Lightning resolves itself pass through
    check_ckpt_path(None)


def test_training_doc_names_the_checkpoint_fit_writes(tmp_path: Path, one_thread: None) -> None:
    """docs/training.md's ``trackformers test`` line must name the file the ``fit`` line before it writes."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    config = root / "configs" / "tiny_cpu.yaml"
    (line,) = [ln for ln in (root / "docs" / "training.md").read_text().splitlines()
               if ln.startswith("trackformers test --config configs/tiny_cpu.yaml --ckpt_path ")]
    documented = Path(line.split("--ckpt_path ")[1].split()[0])
    trainer = yaml.safe_load(config.read_text())["trainer"]
    # the config's fit, 2 steps into tmp_path; its logger kept, since the logger names the checkpoint folder
    args = [a for a in overrides(config, tmp_path) if a != "--trainer.logger=false"]
    assert main(["fit", "--config", str(config), *args]) == 0
    (written,) = [p.relative_to(tmp_path) for p in tmp_path.rglob("*.ckpt")]
    assert written.as_posix() == "lightning_logs/version_0/checkpoints/epoch=0-step=2.ckpt"
    full_run = written.name.replace("step=2", f"step={trainer['max_steps']}")  # the config's own max_steps
    assert documented == Path(trainer["default_root_dir"]) / written.parent / full_run
    # the checkpoint also records the data's volumes (the config's 7, 8, 9), read back as trained_volumes
    from trackformers.training.module import TrackingModule

    assert TrackingModule.load_checkpoint(tmp_path / written).trained_volumes == [7, 8, 9]
