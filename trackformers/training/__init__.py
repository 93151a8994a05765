"""Training: the one LightningModule, the data module and the Lightning CLI.

``pl`` is Lightning's ``lightning.pytorch`` where the unified package is installed, else the standalone
``pytorch_lightning`` (some GPU images ship only that one).
"""

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - depends on the environment
    import pytorch_lightning as pl  # type: ignore[no-redef]

__all__ = ["pl"]
