"""Plots: each function draws a non-empty image from small synthetic events and the metrics' numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.image import imread

from trackformers.errors import InputError
from trackformers.events import Event
from trackformers.plots import benchmark, event_display, figure, score

LAYER_RADII_MM = (32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0, 660.0)


def make_event(seed: int, n_particles: int = 12, n_noise: int = 5, event_id: int = 1000) -> Event:
    """Straight tracks from the origin crossing cylinders; pT 0.3–5 GeV, |η| < 3; a few noise hits."""
    rng = np.random.default_rng(seed)
    pt = rng.uniform(0.3, 5.0, n_particles)
    eta = rng.uniform(-3.0, 3.0, n_particles)
    phi = rng.uniform(-np.pi, np.pi, n_particles)
    n_layers = rng.integers(2, len(LAYER_RADII_MM) + 1, n_particles)  # some particles have < 3 hits
    rows = []
    for p in range(n_particles):
        for layer in range(n_layers[p]):
            r = LAYER_RADII_MM[layer]
            rows.append((r * np.cos(phi[p]), r * np.sin(phi[p]), r * np.sinh(eta[p]), layer, p + 1))
    for _ in range(n_noise):
        layer = int(rng.integers(len(LAYER_RADII_MM)))
        a, r = rng.uniform(-np.pi, np.pi), LAYER_RADII_MM[layer]
        rows.append((r * np.cos(a), r * np.sin(a), rng.uniform(-1000, 1000), layer, 0))
    x, y, zz, layer, pid = (np.array(c) for c in zip(*rows))
    n = len(x)
    hit_id = np.arange(1, n + 1, dtype=np.int64)
    hits = pd.DataFrame({"hit_id": hit_id, "x": x, "y": y, "z": zz, "volume_id": np.full(n, 8),
                         "layer_id": 2 * (layer + 1), "module_id": np.ones(n, np.int64)})
    ptot = np.where(pid > 0, pt[np.maximum(pid - 1, 0)], 0.0)
    truth = pd.DataFrame({"hit_id": hit_id, "particle_id": pid.astype(np.int64), "tx": x, "ty": y, "tz": zz,
                          "tpx": ptot * np.cos(np.arctan2(y, x)), "tpy": ptot * np.sin(np.arctan2(y, x)),
                          "tpz": np.where(pid > 0, ptot * np.sinh(eta[np.maximum(pid - 1, 0)]), 0.0),
                          "weight": np.where(pid > 0, 1.0, 0.0) / max(1, int((pid > 0).sum()))})
    particles = pd.DataFrame({"particle_id": np.arange(1, n_particles + 1, dtype=np.int64),
                              "particle_type": np.full(n_particles, 211), "vx": np.zeros(n_particles),
                              "vy": np.zeros(n_particles), "vz": np.zeros(n_particles),
                              "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
                              "q": np.ones(n_particles, np.int64), "nhits": n_layers.astype(np.int64)})
    return Event(event_id, hits, truth, particles, source="synthetic").validate()


def make_submission(event: Event, seed: int, *, swap: float = 0.25) -> pd.DataFrame:
    """Truth-based tracks with a fraction ``swap`` of hits moved to random other tracks or new singletons."""
    rng = np.random.default_rng(seed)
    track = event.truth["particle_id"].to_numpy().copy()
    noise = track == 0
    track[noise] = 1000 + np.arange(noise.sum())  # noise hits: singleton tracks
    moved = rng.random(len(track)) < swap
    track[moved] = rng.integers(0, track.max() + 5, moved.sum())
    return pd.DataFrame({"hit_id": event.hits["hit_id"].to_numpy(), "track_id": track.astype(np.int64)})


def assert_drawn(fig, tmp_path, stem: str, formats=figure.FORMATS) -> None:
    """The figure renders to non-blank PNG (and PDF) files."""
    paths = figure.save_figure(fig, tmp_path, stem, formats=formats)
    assert [p.suffix[1:] for p in paths] == list(formats)
    assert all(p.stat().st_size > 1000 for p in paths)
    assert not list(tmp_path.glob(".*.part"))  # atomic: no temporary left behind
    assert_png_not_blank(paths[0])


def assert_png_not_blank(path) -> None:
    pixels = imread(path)
    assert (pixels[..., :3] < 0.98).any(axis=-1).mean() > 0.01  # more than a blank page


# --- event display -------------------------------------------------------------------------------------

def _hit_scatters(ax):
    return [c for c in ax.collections if c.get_gid() == "hits"]


def test_event_display_draws_every_hit_coloured_by_track_and_particle(tmp_path):
    event = make_event(1)
    sub = make_submission(event, 2).sample(frac=1.0, random_state=0)  # row order must not matter
    fig = event_display.plot_event(event, sub)
    reco_xy, truth_xy, reco_rz, truth_rz = fig.axes
    x, y, z = (event.hits[c].to_numpy() for c in ("x", "y", "z"))
    (sc,) = _hit_scatters(reco_xy)
    np.testing.assert_allclose(sc.get_offsets(), np.c_[x, y])
    (sc_rz,) = _hit_scatters(truth_rz)
    np.testing.assert_allclose(sc_rz.get_offsets(), np.c_[z, np.hypot(x, y)])
    # Same track → same colour; a track of one hit → grey.
    tracks = sub.set_index("hit_id").loc[event.hits["hit_id"], "track_id"].to_numpy()
    colors = sc.get_facecolors()
    for t in np.unique(tracks):
        same = colors[tracks == t]
        assert (same == same[0]).all()
        if (tracks == t).sum() == 1:
            assert tuple(same[0]) == to_rgba(event_display.GREY)
    pids = event.truth["particle_id"].to_numpy()
    truth_colors = _hit_scatters(truth_xy)[0].get_facecolors()
    assert (truth_colors[pids == 0] == to_rgba(event_display.GREY)).all()
    assert_drawn(fig, tmp_path, "display")


def test_hit_colors_distinguish_first_labels_and_grey_noise():
    labels = np.array([0, 0, 5, 5, 3, 3, 9])
    colors = event_display.hit_colors(labels, noise=0)
    assert tuple(colors[2]) == to_rgba(event_display.PALETTE[0])  # the first real label: first colour
    assert tuple(colors[4]) == to_rgba(event_display.PALETTE[1])
    assert tuple(colors[6]) == to_rgba(event_display.GREY)  # singleton
    assert (colors[:2] == to_rgba(event_display.GREY)).all()  # noise
    assert event_display.hit_colors(np.array([], dtype=np.int64)).shape == (0, 4)


def test_event_display_zoom_and_focus(tmp_path):
    event = make_event(3)
    sub = make_submission(event, 4)
    fig = event_display.plot_event(event, sub, zoom=(0.0, 100.0, -50.0, 50.0))
    assert fig.axes[0].get_xlim() == (0.0, 100.0) and fig.axes[1].get_ylim() == (-50.0, 50.0)
    pid = int(event.particles["particle_id"].iloc[0])
    fig = event_display.plot_event(event, sub, focus=pid)
    mask = event.truth["particle_id"].to_numpy() == pid
    xs = event.hits["x"].to_numpy()[mask]
    lo, hi = fig.axes[0].get_xlim()
    assert lo <= xs.min() and hi >= xs.max()
    assert hi - lo <= np.ptp(xs) + 2 * event_display.ZOOM_MARGIN_MM + 1e-6
    zs = event.hits["z"].to_numpy()[mask]
    lo, hi = fig.axes[2].get_xlim()
    assert lo == pytest.approx(zs.min() - event_display.ZOOM_MARGIN_MM)
    assert hi == pytest.approx(zs.max() + event_display.ZOOM_MARGIN_MM)
    focus = [c for c in fig.axes[0].collections if c.get_gid() == "focus"]
    assert len(focus) == 1 and len(focus[0].get_offsets()) == mask.sum()
    # Only the focus particle (truth) and the tracks holding its hits (reco) keep their colours.
    faded = to_rgba(event_display.FADED)
    truth_colors = _hit_scatters(fig.axes[1])[0].get_facecolors()
    assert (np.all(truth_colors == faded, axis=1) == ~mask).all()
    tracks = sub.set_index("hit_id").loc[event.hits["hit_id"], "track_id"].to_numpy()
    reco_colors = _hit_scatters(fig.axes[0])[0].get_facecolors()
    assert (np.all(reco_colors == faded, axis=1) == ~np.isin(tracks, tracks[mask])).all()
    assert_drawn(fig, tmp_path, "zoomed", formats=("png",))


def test_event_display_without_truth(tmp_path):
    event = make_event(5)
    bare = Event(event.event_id, event.hits, source="synthetic")
    fig = event_display.plot_event(bare, make_submission(event, 6))
    assert not _hit_scatters(fig.axes[1]) and _hit_scatters(fig.axes[0])
    assert_drawn(fig, tmp_path, "bare", formats=("png",))


# --- benchmark -----------------------------------------------------------------------------------------

RECORDS = [
    {"backend": b, "N": n, "D": 32, "w": 64, "fwd_ms": f, "fwdbwd_ms": fb}
    for b, scale in (("reference", 3.0), ("dense", 1.0), ("local", 0.2))
    for n, f, fb in ((1031, 0.5 * scale, 1.5 * scale), (4099, 2.0 * scale, 6.0 * scale),
                     (16381, 8.0 * scale, None if b == "reference" else 24.0 * scale))
]


def test_benchmark_plot_draws_records_per_backend(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"device": "cpu", "records": RECORDS}))
    fig = benchmark.plot_benchmark(path)
    fwd, fwdbwd = fig.axes
    lines = {ln.get_label(): ln for ln in fwd.get_lines()}
    assert set(lines) == {"reference", "dense", "local"}
    np.testing.assert_allclose(lines["local"].get_xdata(), [1031, 4099, 16381])
    np.testing.assert_allclose(lines["local"].get_ydata(), [0.1, 0.4, 1.6])
    ref = [ln for ln in fwdbwd.get_lines() if ln.get_label() == "reference"][0]
    np.testing.assert_allclose(ref.get_xdata(), [1031, 4099])  # the missing time is left out
    assert fwd.get_xscale() == "log"
    assert_drawn(fig, tmp_path, "bench")


def test_benchmark_series_label_varying_parameters():
    recs = [dict(r, w=w) for r in RECORDS[:3] for w in (16, 64)]
    series = benchmark.benchmark_series(recs, "fwd_ms")
    assert set(series) == {"reference (w=16)", "reference (w=64)"}
    assert series["reference (w=16)"][0] == [1031, 4099, 16381]


def test_benchmark_plot_reads_the_benchmark_script_json(tmp_path):
    """The schema of ``benchmarks/attention.py --json``: lower-case keys, times without _ms, error rows."""
    rows = [dict(n=n, d=64, w=512, h=8, case=case, backend=b, build=0.1, fwd=f, fwdbwd=3 * f,
                 layer=3 * f + 0.1, tflops_fwd=1.0)
            for case in ("1 event", "packed") for b, f0 in (("local", 0.2), ("flex", 0.5))
            for n, f in ((16384, f0), (65536, 4 * f0))]
    rows.append(dict(n=131072, d=64, w=512, h=8, case="packed", backend="dense", error="RuntimeError: O(N²)"))
    path = tmp_path / "attention.json"
    path.write_text(json.dumps({"env": {"device": "NVIDIA H100"}, "rows": rows, "args": {}}))
    records = benchmark.load_benchmark(path)
    assert records[0]["N"] == 16384 and records[0]["fwd_ms"] == 0.2
    assert records[0]["layer_ms"] == pytest.approx(0.7)
    fig = benchmark.plot_benchmark(path, where={"case": "packed"})
    assert [ax.get_title() for ax in fig.axes] == list(benchmark.TIMINGS.values())
    lines = {ln.get_label(): ln for ln in fig.axes[1].get_lines()}
    assert set(lines) == {"local", "flex"}  # the error row has no times
    np.testing.assert_allclose(lines["flex"].get_ydata(), [1.5, 6.0])
    assert len(benchmark.plot_benchmark(records).axes[0].get_lines()) == 4  # both cases: 2 backends × 2


def test_benchmark_bad_input(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"N": 3, "fwd_ms": 1.0}]))
    with pytest.raises(InputError, match="backend"):
        benchmark.load_benchmark(bad)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        benchmark.load_benchmark(bad)
    with pytest.raises(InputError, match="no timings"):
        benchmark.plot_benchmark([{"backend": "dense", "N": 5}])


# --- score ---------------------------------------------------------------------------------------------

def test_score_plot_from_summary(tmp_path):
    summary = {"trackml_score": 0.6, "per_event": [{"event_id": 7, "trackml_score": 0.5},
                                                    {"event_id": 9, "trackml_score": 0.7}]}
    fig = score.plot_score(summary)
    (ax,) = fig.axes
    (pts,) = [ln for ln in ax.get_lines() if ln.get_gid() == "per_event"]
    np.testing.assert_allclose(pts.get_ydata(), [0.5, 0.7])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["7", "9"]
    (mean,) = [ln for ln in ax.get_lines() if ln.get_gid() == "mean"]
    assert mean.get_ydata()[0] == pytest.approx(0.6)
    assert_drawn(fig, tmp_path, "score")
    with pytest.raises(InputError, match="per_event"):
        score.plot_score({"trackml_score": 0.1})
    # A summary read back from JSON: NaN stored as null.
    per_event = [{"trackml_score": None}, {"trackml_score": 0.4}]
    fig = score.plot_score({"trackml_score": None, "per_event": per_event})
    _, y = _drawn(fig.axes[0], "per_event")
    assert np.isnan(y[0]) and y[1] == 0.4


# --- efficiency, rates, worst particles, the evaluation folder -------------------------------------------

@pytest.fixture(scope="module")
def sample():
    events = [make_event(10 + i, n_particles=40, event_id=1000 + i) for i in range(3)]
    subs = [make_submission(e, 20 + i) for i, e in enumerate(events)]
    return events, subs


def _drawn(ax, gid):
    (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    return np.asarray(line.get_xdata()), np.asarray(line.get_ydata())


def _bar_ends(ax, gid):
    """(lower, upper) ends of the vertical error bars of the errorbar series whose data line has ``gid``."""
    (cont,) = [c for c in ax.containers if c.lines[0].get_gid() == gid]
    vertical = cont.lines[2][-1]  # the y error LineCollection comes last
    segs = np.array(vertical.get_segments())
    return segs[:, :, 1].min(axis=1), segs[:, :, 1].max(axis=1)


@pytest.mark.parametrize("var", ["pt", "eta"])
def test_efficiency_plot_draws_the_metrics_numbers(sample, tmp_path, var):
    from trackformers.metrics import binned_efficiency
    from trackformers.plots.efficiency import plot_efficiency

    events, subs = sample
    table = binned_efficiency(var=var, events=events, submissions=subs)
    fig = plot_efficiency(var=var, events=events, submissions=subs)
    (ax,) = fig.axes
    full = table[table["dm_efficiency_total"] > 0]
    assert len(full) >= 3
    for column in ("dm_efficiency", "perfect_efficiency"):
        x, y = _drawn(ax, column)
        np.testing.assert_allclose(y, full[column])
        lo, hi = _bar_ends(ax, column)
        np.testing.assert_allclose(lo, full[f"{column}_lo"], atol=1e-12)
        np.testing.assert_allclose(hi, full[f"{column}_hi"], atol=1e-12)
    x, _ = _drawn(ax, "dm_efficiency")
    np.testing.assert_allclose(x, 0.5 * (full["lo"] + full["hi"]))
    # Not a trivial picture: some bins below 1 and above 0 (the submission is imperfect).
    assert 0 < np.nanmean(full["dm_efficiency"]) < 1
    assert_drawn(fig, tmp_path, f"eff_{var}", formats=("png",) if var == "eta" else figure.FORMATS)


def test_rates_plot_draws_the_metrics_numbers(sample, tmp_path):
    from trackformers.metrics import binned_rates
    from trackformers.plots.rates import plot_rates

    events, subs = sample
    table = binned_rates(events=events, submissions=subs)
    fig = plot_rates(events=events, submissions=subs)
    for ax, column in zip(fig.axes, ("fake_rate", "duplicate_rate")):
        full = table[table[f"{column}_total"] > 0]
        _, y = _drawn(ax, column)
        np.testing.assert_allclose(y, full[column])
        lo, hi = _bar_ends(ax, column)
        np.testing.assert_allclose(hi, full[f"{column}_hi"], atol=1e-12)
    assert table["fake_rate_pass"].sum() > 0
    assert_drawn(fig, tmp_path, "rates")


def test_worst_particles_ranks_broken_particles_first():
    from trackformers.metrics import match_event, reconstructable

    event = make_event(30, n_particles=30)
    truth = event.truth
    track = truth["particle_id"].to_numpy().copy()
    track[track == 0] = 10_000 + np.arange((track == 0).sum())
    match = match_event(event=event, submission=pd.DataFrame({"hit_id": truth["hit_id"], "track_id": track}))
    good = match.particles[reconstructable(match.particles) & (match.particles["nhits"] >= 6)]["particle_id"]
    split, shaved = int(good.iloc[0]), int(good.iloc[1])
    idx = np.flatnonzero(track == split)
    track[idx[: len(idx) // 2]] = 20_000  # split in two halves: no DM match
    track[np.flatnonzero(track == shaved)[0]] = 20_001  # one hit lost: still DM, not perfect
    sub = pd.DataFrame({"hit_id": truth["hit_id"], "track_id": track})
    worst = event_display.worst_particles(event, sub, n=3)
    assert list(worst["particle_id"][:2]) == [split, shaved]
    assert not worst["dm_matched"][0] and worst["dm_matched"][1] and not worst["perfect"][1]
    assert worst["n_tracks"][0] == 2 and worst["best_fraction"][0] == pytest.approx((len(idx) - len(idx) // 2)
                                                                                      / len(idx))
    assert worst["best_fraction"][2] == 1.0 and len(worst) == 3


def test_write_evaluation_plots(sample, tmp_path):
    from trackformers.metrics import evaluate_event, summarize
    from trackformers.plots import write_evaluation_plots

    events, subs = sample
    summary = summarize([evaluate_event(event=e, submission=s) for e, s in zip(events, subs)])
    paths = write_evaluation_plots(events=iter(events), submissions=iter(subs), summary=summary,
                                   out_dir=tmp_path / "plots", benchmark=RECORDS, formats=("png",))
    _, drawn = _drawn(score.plot_score(summary).axes[0], "per_event")
    np.testing.assert_allclose(drawn, [e["trackml_score"] for e in summary["per_event"]])
    stems = {p.stem for p in paths}
    assert stems == {"efficiency_pt", "efficiency_eta", "rates_eta", "score", "event_display_event000001000",
                     "attention_benchmark"}
    assert len(paths) == 6
    for path in paths:
        assert_png_not_blank(path)
