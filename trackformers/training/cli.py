"""The Lightning CLI of trackformers: ``trackformers fit|validate|test|predict --config configs/X.yaml``.

Model = :class:`~trackformers.training.module.TrackingModule`, data = :class:`TrackDataModule`; the feature
normalisation constants are given once (``model.features``) and linked to the data module.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.cli import LightningCLI

from trackformers.training.datamodule import TrackDataModule
from trackformers.training.module import TrackingModule


class TrackingCLI(LightningCLI):
    """LightningCLI with the model's feature configuration linked into the data module."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("model.features", "data.features")


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
