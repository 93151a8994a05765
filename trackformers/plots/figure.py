"""Figure creation and atomic saving shared by the plot modules (matplotlib, Agg backend, no display)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

# Plots are files, never windows: select Agg unless pyplot is already in use or a backend was chosen
# (a notebook kernel sets MPLBACKEND to its inline backend). The figures here never go through pyplot.
if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from trackformers.io.atomic import atomic_path  # noqa: E402

#: Formats every plot is written in.
FORMATS: tuple[str, ...] = ("png", "pdf")


def new_figure(ncols: int = 1, nrows: int = 1, *, size: tuple[float, float] = (5.0, 4.0),
               **subplot_kw: object) -> tuple[Figure, list]:
    """A pyplot-free figure (safe under any backend, never shown) and its flat list of axes.

    ``size`` is the size of one panel in inches; the figure is ``ncols * w`` by ``nrows * h``.
    """
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, [ax for row in axes for ax in row]


def save_figure(fig: Figure, out_dir: str | os.PathLike[str], stem: str, *,
                formats: Sequence[str] = FORMATS, dpi: int = 120) -> list[Path]:
    """Write ``fig`` as ``out_dir/stem.{png,pdf}`` atomically; returns the written paths."""
    paths = []
    for fmt in formats:
        final = Path(out_dir) / f"{stem}.{fmt}"
        with atomic_path(final) as tmp:
            # The temporary name ends in ".part", so the format must be given explicitly.
            fig.savefig(tmp, format=fmt, dpi=dpi)
        paths.append(final)
    return paths
