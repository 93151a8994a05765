"""The Lightning CLI of trackformers: ``trackformers fit|validate|test|predict --config configs/X.yaml``.

Model = :class:`~trackformers.training.module.TrackingModule`, data = :class:`TrackDataModule`; the feature
normalisation constants are given once (``model.features``) and linked to the data module.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI

from trackformers.errors import InputError
from trackformers.training.datamodule import TrackDataModule
from trackformers.training.module import TrackingModule

#: ``ckpt_path`` values Lightning resolves itself (not file names).
SPECIAL_CKPT_PATHS = ("best", "last", "hpc", "registry")


class TrackingCLI(LightningCLI):
    """LightningCLI with the model's feature configuration linked into the data module."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("model.features", "data.features")

    # Lightning calls ``before_<subcommand>`` after building model, data and trainer, before the run.
    def before_fit(self) -> None:
        check_ckpt_path(self.config[self.subcommand].get("ckpt_path"))

    before_validate = before_test = before_predict = before_fit


def check_ckpt_path(path: Any) -> None:
    """InputError unless ``--ckpt_path`` is unset, a name Lightning resolves (best, last, ...), a remote URL or an
    existing file: a missing file would otherwise end in Lightning's FileNotFoundError traceback."""
    if path is None:
        return
    text = str(path)
    if text in SPECIAL_CKPT_PATHS or text.startswith("registry:") or "://" in text:
        return
    if Path(text).is_dir():
        raise InputError(f"--ckpt_path {text}: is a folder; expected a checkpoint file in it, e.g. "
                         "lightning_logs/version_0/checkpoints/epoch=0-step=50.ckpt.")
    if not Path(text).is_file():
        raise InputError(f"--ckpt_path {text}: no such checkpoint file; expected a .ckpt written by trackformers fit "
                         "(e.g. lightning_logs/version_0/checkpoints/epoch=0-step=50.ckpt), or best or last.")


def run_cli(args: Sequence[str]) -> TrackingCLI:
    """Run the CLI on ``args`` (e.g. ``["fit", "--config", "configs/tiny_cpu.yaml"]``)."""
    with warnings.catch_warnings():
        # The console script hands its own argv over as ``args``; Lightning would warn that both are given.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return _cli(args)


def _cli(args: Sequence[str]) -> TrackingCLI:
    return TrackingCLI(TrackingModule, TrackDataModule, args=list(args), subclass_mode_model=False,
                       subclass_mode_data=False, save_config_kwargs={"overwrite": True},
                       auto_configure_optimizers=False)
