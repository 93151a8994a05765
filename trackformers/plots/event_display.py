"""Event display: x–y and r–z views of one event, reconstructed tracks beside the truth.

Hits are coloured by reconstructed ``track_id`` (left column) and by true ``particle_id`` (right column);
tracks and particles with a single hit, and noise (``particle_id == 0``), are drawn small and grey.
Positions in mm; r = sqrt(x² + y²).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from trackformers.events import Event
from trackformers.plots.figure import new_figure

#: Categorical palette cycled over track / particle ids: tab20 without its greys, strong colours first.
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
)
GREY = "#bbbbbb"
#: Colour of the hits that a ``focus`` view pushes into the background.
FADED = "#e6e6e6"
#: Margin added around a focus particle's hits when zooming (mm).
ZOOM_MARGIN_MM = 20.0


def hit_colors(labels: np.ndarray, *, noise: int | None = None) -> np.ndarray:
    """(N, 4) RGBA per hit: one palette colour per label; singleton labels and ``noise`` are grey.

    Colours follow the order of first appearance of the coloured labels, so the same labels always get
    the same colours and the first few get distinct strong ones.
    """
    labels = np.asarray(labels)
    uniq, first, inverse, counts = np.unique(labels, return_index=True, return_inverse=True,
                                             return_counts=True)
    lonely = counts < 2
    if noise is not None:
        lonely |= uniq == noise
    rank = np.zeros(len(uniq), np.int64)
    rank[~lonely] = np.argsort(np.argsort(first[~lonely]))  # label index → order of first appearance
    palette = np.array([to_rgba(c) for c in PALETTE]).reshape(-1, 4)
    colors = palette[rank % len(palette)]
    colors[lonely] = to_rgba(GREY)
    return colors[inverse.reshape(-1)]


def _track_per_hit(event: Event, submission: pd.DataFrame) -> np.ndarray:
    """Reconstructed track id for every hit of ``event`` in hit order (−1 where the submission lacks it)."""
    tracks = pd.Series(submission["track_id"].to_numpy(), index=submission["hit_id"].to_numpy())
    return tracks.reindex(event.hits["hit_id"].to_numpy()).fillna(-1).to_numpy(np.int64)


def _particle_per_hit(event: Event) -> np.ndarray | None:
    if event.truth is None:
        return None
    pids = pd.Series(event.truth["particle_id"].to_numpy(), index=event.truth["hit_id"].to_numpy())
    return pids.reindex(event.hits["hit_id"].to_numpy()).fillna(0).to_numpy(np.int64)


def _limits(values: np.ndarray, margin: float) -> tuple[float, float]:
    return float(values.min() - margin), float(values.max() + margin)


def plot_event(event: Event, submission: pd.DataFrame, *,
               zoom: tuple[float, float, float, float] | None = None,
               focus: int | Sequence[int] | None = None, marker_size: float = 4.0) -> Figure:
    """Draw ``event`` with its reconstruction: axes ``[reco x–y, truth x–y, reco r–z, truth r–z]``.

    Args:
        event: the event (``truth`` optional: without it the truth panels say so).
        submission: ``hit_id, track_id`` per hit.
        zoom: x–y window ``(x_min, x_max, y_min, y_max)`` in mm; the r–z views zoom to the hits inside it.
        focus: particle id(s) drawn with black edges; only they (truth view) and the tracks holding their hits
            (reco view) keep colours, the other hits are :data:`FADED`; without ``zoom`` both views zoom to
            their hits (± :data:`ZOOM_MARGIN_MM`).
        marker_size: scatter marker area (points²) of track hits; grey hits are drawn at a third of it.

    Every scatter has gid ``"hits"`` and its points are the event's hits in ``event.hits`` order.
    """
    x = event.hits["x"].to_numpy(np.float64)
    y = event.hits["y"].to_numpy(np.float64)
    z = event.hits["z"].to_numpy(np.float64)
    r = np.hypot(x, y)
    tracks = _track_per_hit(event, submission)
    particles = _particle_per_hit(event)
    focus_ids = np.atleast_1d(np.asarray([] if focus is None else focus, dtype=np.int64))
    in_focus = np.isin(particles, focus_ids) if particles is not None else np.zeros(len(x), bool)
    zoom_rz = None
    if zoom is None and in_focus.any():
        zoom = (*_limits(x[in_focus], ZOOM_MARGIN_MM), *_limits(y[in_focus], ZOOM_MARGIN_MM))
        zoom_rz = (*_limits(z[in_focus], ZOOM_MARGIN_MM), *_limits(r[in_focus], ZOOM_MARGIN_MM))
    fig, axes = new_figure(2, 2, size=(5.5, 5.0))
    views = [("reconstructed tracks", tracks, -1), ("truth particles", particles, 0)]
    for col, (title, labels, noise) in enumerate(views):
        ax_xy, ax_rz = axes[col], axes[2 + col]
        if labels is None:
            for ax in (ax_xy, ax_rz):
                ax.text(0.5, 0.5, "no truth in this event", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
            continue
        # With a focus, only the focus particles (truth) and the tracks holding their hits (reco) keep
        # colours, so that a split or merged particle stands out against the rest of the event.
        keep = np.isin(labels, labels[in_focus]) if in_focus.any() else np.ones(len(labels), bool)
        colors = hit_colors(np.where(keep, labels, noise), noise=noise)
        grey = np.all(colors == to_rgba(GREY), axis=1) | ~keep
        colors[~keep] = to_rgba(FADED)
        sizes = np.where(grey, marker_size / 3, marker_size)
        if in_focus.any():
            sizes = np.where(keep, 3 * marker_size, marker_size / 3)  # a zoomed view has room for bigger dots
        ax_xy.scatter(x, y, s=sizes, c=colors, linewidths=0, gid="hits", rasterized=len(x) > 20000)
        ax_rz.scatter(z, r, s=sizes, c=colors, linewidths=0, gid="hits", rasterized=len(x) > 20000)
        if in_focus.any():
            for ax, (u, v) in ((ax_xy, (x, y)), (ax_rz, (z, r))):
                ax.scatter(u[in_focus], v[in_focus], s=marker_size * 10, facecolors="none",
                           edgecolors="black", linewidths=0.8, gid="focus")
        ax_xy.set(title=f"{event.name}: {title} (x–y)", xlabel="x [mm]", ylabel="y [mm]")
        ax_rz.set(title=f"{event.name}: {title} (r–z)", xlabel="z [mm]", ylabel="r [mm]")
        ax_xy.set_aspect("equal", adjustable="box")
    if zoom is not None:
        x0, x1, y0, y1 = zoom
        inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
        if zoom_rz is None and inside.any():
            zoom_rz = (*_limits(z[inside], ZOOM_MARGIN_MM), *_limits(r[inside], ZOOM_MARGIN_MM))
        for ax in axes[:2]:
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
        if zoom_rz is not None:
            for ax in axes[2:]:
                ax.set_xlim(*zoom_rz[:2])
                ax.set_ylim(*zoom_rz[2:])
    return fig


def worst_particles(event: Event, submission: pd.DataFrame, *, n: int = 5, pt_min: float = 0.9,
                    eta_max: float = 4.0, min_hits: int = 3) -> pd.DataFrame:
    """The ``n`` worst-reconstructed reconstructable particles of ``event``, worst first.

    Matching and reconstructability come from :func:`trackformers.metrics.match_event`. Columns:
    particle_id, nhits, pt (GeV), eta, dm_matched, perfect, n_tracks (distinct tracks holding its hits),
    best_track_id and best_fraction (share of its hits in the track holding most of them). Order: not
    DM-matched first, then lowest ``best_fraction``, then most tracks, then highest pT.
    """
    from trackformers.metrics import match_event, reconstructable

    match = match_event(event=event, submission=submission, min_hits=min_hits)
    keep = reconstructable(match.particles, pt_min=pt_min, eta_max=eta_max, min_hits=min_hits)
    parts = match.particles[keep]
    pairs = pd.DataFrame({"particle_id": _particle_per_hit(event),
                          "track_id": _track_per_hit(event, submission)})
    pairs = pairs[pairs["particle_id"] != 0]
    counts = pairs.value_counts().rename("shared").reset_index()
    # Most shared hits first; ties to the lower track id, so the result does not depend on row order.
    counts = counts.sort_values(["particle_id", "shared", "track_id"], ascending=[True, False, True])
    best = counts.drop_duplicates("particle_id").set_index("particle_id")
    spread = counts.groupby("particle_id").size()
    out = parts[["particle_id", "nhits", "pt", "eta", "dm_matched", "perfect"]].copy()
    out["n_tracks"] = spread.reindex(out["particle_id"]).fillna(0).to_numpy(np.int64)
    out["best_track_id"] = best["track_id"].reindex(out["particle_id"]).fillna(-1).to_numpy(np.int64)
    shared = best["shared"].reindex(out["particle_id"]).fillna(0).to_numpy(np.float64)
    out["best_fraction"] = shared / np.maximum(out["nhits"].to_numpy(), 1)
    out = out.sort_values(["dm_matched", "best_fraction", "n_tracks", "pt"],
                          ascending=[True, True, False, False], kind="stable")
    return out.head(n).reset_index(drop=True)
