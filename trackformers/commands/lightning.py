"""``trackformers fit|validate|test|predict``: the Lightning CLI (all arguments pass through to it)."""

from __future__ import annotations

from collections.abc import Sequence

NAMES = ["fit", "validate", "test", "predict"]
HELP = "train / evaluate a model with the Lightning CLI (--config configs/NAME.yaml; see docs/training.md)"
PASSTHROUGH = True


def add_arguments(parser: object) -> None:  # not used: passthrough commands get the raw arguments
    return None


def run(args: object) -> int:
    rest = list(getattr(args, "rest", []) or [])
    return run_passthrough(getattr(args, "command", "fit"), rest)


def run_passthrough(name: str, argv: Sequence[str]) -> int:
    """Run ``name`` (fit/validate/test/predict) with the Lightning CLI on ``argv``; 0 on success."""
    from trackformers.training.cli import run_cli

    run_cli([name, *argv])
    return 0
