"""Reconstruct tracks over event files: stream events in, write one TrackML submission per event out.

The main job a physicist runs (``trackformers reconstruct``). Inputs are files, folders, TrackML prefixes or
globs of any supported format; events are read one at a time (a folder of TrackML events is split into its
events, so a bad event costs only itself under ``on_error="skip"``). Each submission holds every input hit
exactly once (checked before writing) and is written atomically, so an interrupted run never leaves a
partial file. Time is split into the stages read, features, model, clustering and write.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from trackformers.errors import InputError
from trackformers.events import Event

if TYPE_CHECKING:
    from trackformers.clustering.selection import TrackSelector
    from trackformers.filtering import HitFilter

STAGES: tuple[str, ...] = ("read", "features", "model", "clustering", "write")
FORMATS: tuple[str, ...] = ("csv", "parquet")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
#: Where the shipped checkpoint lives, relative to the repository (the package's parent folder).
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "data" / "checkpoints"


def default_checkpoint() -> Path:
    """The shipped checkpoint (``data/checkpoints/*.ckpt``; ``best.ckpt`` if several); InputError if none."""
    found = sorted(CHECKPOINT_DIR.glob("*.ckpt")) if CHECKPOINT_DIR.is_dir() else []
    if not found:
        raise InputError(f"no shipped checkpoint found in {CHECKPOINT_DIR} (expected a *.ckpt file); "
                         "pass one with --checkpoint PATH.")
    best = [p for p in found if p.name == "best.ckpt"]
    return best[0] if best else found[0]


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; ``cuda`` without a GPU is an InputError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA GPU is available here; expected --device cpu or auto.")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError(f"--device {name}: unknown device; expected auto, cpu or cuda.")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` → ``bf16`` on a CUDA device with bf16 support, else ``fp32``; others are checked and returned."""
    if name not in PRECISIONS:
        raise InputError(f"--precision {name}: unknown precision; expected one of {', '.join(PRECISIONS)}.")
    if name == "auto":
        # native bf16 only (Ampere and later): emulated bf16 on older GPUs is slower than fp32
        cuda = (device.type == "cuda" and torch.cuda.is_available()
                and torch.cuda.is_bf16_supported(including_emulation=False))
        return "bf16" if cuda else "fp32"
    return name


def lightning_precision(precision: str, device: torch.device) -> str:
    """The Lightning Trainer ``precision`` of a ``--precision`` choice (for the distributed path)."""
    return "bf16-mixed" if resolve_precision(precision, device) == "bf16" else "32-true"


def prefer_expandable_segments() -> bool:
    """Ask PyTorch's CUDA caching allocator for expandable segments, unless the user configured it or CUDA
    is already initialised (the setting is read once). Events of varying size then reuse one growing segment
    instead of leaving differently sized blocks cached: at μ = 200 the process reserved 338 instead of
    462 MB eager (H100, docs/benchmarks.md; with CUDA graphs 732 vs 730 MB: no gain there). True if set."""
    if any(k in os.environ for k in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")) or torch.cuda.is_initialized():
        return False
    os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    return True


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The model's numeric context: bf16 autocast (matrix products and attention in bf16, accumulations,
    norms and the clusterers' distances in fp32) or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_module(checkpoint: str | Path, device: torch.device, *, backend: str | None = None) -> Any:
    """Load a :class:`~trackformers.training.module.TrackingModule` for inference (eval mode, on device).

    ``backend`` overrides the attention backend stored in the checkpoint (e.g. ``dense`` on a CPU).
    """
    from trackformers.training.module import TrackingModule

    path = Path(checkpoint)
    if not path.is_file():
        raise InputError(f"checkpoint {path}: no such file; expected a .ckpt written by trackformers.")
    if backend is None:
        module = TrackingModule.load_checkpoint(path, map_location="cpu")
    else:
        module = TrackingModule.load_checkpoint(path, map_location="cpu", backend=backend)
    return module.to(device).eval()


def load_tracker(checkpoint: str | Path, device: torch.device, *, backend: str | None = None) -> Any:
    """:func:`load_module` for the model that builds the tracks (``--checkpoint``): a pure hit filter is refused.

    A :class:`~trackformers.models.tasks.HitFilterTask` without an embedding (``dim = 0``) only keeps or drops
    hits: as the tracker it would give every hit its own track and still exit 0. With an embedding it is a
    two-stage tracker in one model and is accepted.
    """
    from trackformers.models.tasks.hit_filter import HitFilterTask

    module = load_module(checkpoint, device, backend=backend)
    task = getattr(module, "task", None)
    if isinstance(task, HitFilterTask) and not task.dim:
        raise InputError(f"checkpoint {checkpoint}: it is a hit filter (HitFilterTask without an embedding), which "
                         "keeps or drops hits but builds no tracks; pass it with --filter CKPT and give the tracker "
                         "with --checkpoint.")
    return module


class StageTimer:
    """Wall time per stage (seconds, summed over events); synchronises CUDA so GPU work is counted.

    On CUDA it also notes ``torch.cuda.max_memory_allocated`` (bytes, the peak since the caller's last reset)
    when each stage starts and ends (``peak_before``, ``peak_after``): e.g. the clustering stage's
    ``peak_before`` is the peak of features + model, its ``peak_after`` that of the whole event.
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.peak_before: dict[str, int] = {}
        self.peak_after: dict[str, int] = {}
        self._cuda = device is not None and device.type == "cuda"
        self._device = device

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self._cuda:
            torch.cuda.synchronize()
            self.peak_before[stage] = torch.cuda.max_memory_allocated(self._device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self._cuda:
                torch.cuda.synchronize()
                self.peak_after[stage] = torch.cuda.max_memory_allocated(self._device)
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


@dataclass
class TimedClusterer:
    """Wraps a clusterer so the time spent inside it is booked as the ``clustering`` stage."""

    inner: Callable[..., Tensor]
    timer: StageTimer

    @property
    def uses_phi(self) -> bool:
        return bool(getattr(self.inner, "uses_phi", False))

    def __call__(self, x: Tensor, *, beta: Tensor | None = None, **kwargs: Any) -> Tensor:
        with self.timer("clustering"):
            return self.inner(x, beta=beta, **kwargs)


def reconstruct_event(module: Any, event: Event, clusterer: Callable[..., Tensor] | None,
                      timer: StageTimer, *, forward: Callable[..., Any] | None = None,
                      hit_filter: HitFilter | None = None, clean: dict[str, Any] | None = None,
                      filter_forward: Callable[..., Any] | None = None,
                      selector: TrackSelector | None = None) -> pd.DataFrame:
    """``DataFrame[hit_id, track_id]`` for one event; books features, model and clustering time.

    ``forward`` replaces ``module(batch)`` (e.g. a :class:`~trackformers.cuda_graph.GraphedForward`).
    ``hit_filter`` (a :class:`~trackformers.filtering.HitFilter`): only the hits it keeps go to ``module``;
    every dropped hit gets its own new track id. The filter's time (its features, model, the subset and the
    merge) is booked as ``model``; ``filter_forward`` replaces the filter module's forward as ``forward`` does
    the tracker's (None: eager).
    ``clean``: keyword arguments of :func:`~trackformers.clustering.cleaning.clean_tracks` (``{}`` for its
    defaults): the tracks are cleaned with a helix fit on the hits' x, y, z (mm); booked as ``clustering``.
    ``selector`` (a :class:`~trackformers.clustering.selection.TrackSelector`): last, tracks it judges fake are
    dissolved into singletons; booked as ``clustering``.
    """
    if len(event.hits) == 0:
        return pd.DataFrame({"hit_id": np.zeros(0, np.int64), "track_id": np.zeros(0, np.int64)})
    if selector is not None:
        from trackformers.clustering.selection import select_submission

        sub = reconstruct_event(module, event, clusterer, timer, forward=forward, hit_filter=hit_filter,
                                clean=clean, filter_forward=filter_forward)
        with timer("clustering"):
            return select_submission(event.hits, sub, selector)
    if clean is not None:
        from trackformers.clustering.cleaning import check_params, clean_submission

        params = check_params(clean)
        sub = reconstruct_event(module, event, clusterer, timer, forward=forward, hit_filter=hit_filter,
                                filter_forward=filter_forward)
        with timer("clustering"):
            return clean_submission(event.hits, sub, **params)
    if hit_filter is not None:
        t0 = time.perf_counter()
        keep = hit_filter.keep(event, forward=filter_forward)
        sub_event = hit_filter.subset(event, keep)
        filtering = time.perf_counter() - t0
        sub = reconstruct_event(module, sub_event, clusterer, timer, forward=forward)
        t0 = time.perf_counter()
        merged = hit_filter.merge(event, keep, sub)
        timer.seconds["model"] += filtering + time.perf_counter() - t0
        return merged
    if clusterer is None and hasattr(getattr(module, "task", None), "clusterer"):
        clusterer = module.task.clusterer(None)  # the model's default, built here so its time is booked
    timed = TimedClusterer(clusterer, timer) if clusterer is not None else None
    spent = timer.seconds["clustering"]
    t0 = time.perf_counter()
    from trackformers.attention.api import BackendUnavailable

    try:
        # no_grad rather than inference_mode: inference tensors have no version counter, which layers that
        # cache per input tensor (the local attention's block tables per cu_seqlens) read.
        # A GraphedForward's borrowing(): the clusterer's tensors reuse the graph pool's idle blocks.
        borrowing = getattr(forward, "borrowing", contextlib.nullcontext)
        with torch.no_grad(), borrowing():
            sub = module.reconstruct(event, clusterer=timed) if forward is None else \
                module.reconstruct(event, clusterer=timed, forward=forward)
    except BackendUnavailable as err:  # e.g. a dense-trained checkpoint on a 500k-hit event
        raise InputError(f"{event.source}: event {event.event_id} ({len(event.hits)} hits): {err}; expected "
                         "a backend that scales to it, e.g. --backend auto (windowed: local or flex).") from None
    total = time.perf_counter() - t0
    spent = timer.seconds["clustering"] - spent
    # A module may report its feature time (``last_timings``); the rest besides clustering is the model's.
    features = float((getattr(module, "last_timings", None) or {}).get("features", 0.0))
    timer.seconds["features"] += features
    timer.seconds["model"] += max(0.0, total - spent - features)
    return sub


def output_path(out_dir: Path, event: Event, fmt: str) -> Path:
    """``DIR/event000000001-submission.csv``, or ``DIR/submission.parquet/event000000001.parquet``."""
    if fmt == "parquet":
        from trackformers.io.submission import PARQUET_DATASET  # the name evaluate looks for

        return out_dir / PARQUET_DATASET / f"{event.name}.parquet"
    return out_dir / f"{event.name}-submission.csv"


def write_output(event: Event, submission: pd.DataFrame, out_dir: str | Path, fmt: str = "csv") -> Path:
    """Check that every hit appears exactly once, then write the submission atomically; returns its path."""
    from trackformers.io.atomic import atomic_path
    from trackformers.io.submission import check_submission, write_submission

    check_submission(event, submission)
    path = output_path(Path(out_dir), event, fmt)
    if fmt == "csv":
        return write_submission(submission, path, event_id=event.event_id)
    if fmt != "parquet":
        raise InputError(f"--format {fmt}: unknown output format; expected one of {', '.join(FORMATS)}.")
    table = pd.DataFrame({"event_id": np.full(len(submission), event.event_id, np.int64),
                          "hit_id": submission["hit_id"].to_numpy(np.int64),
                          "track_id": submission["track_id"].to_numpy(np.int64)})
    with atomic_path(path) as tmp:  # a dot-named temporary: Parquet data-set readers ignore it
        table.to_parquet(tmp, index=False)
    return path


def input_units(inputs: Sequence[str | Path], on_error: str, skipped: list[tuple[str, str]]) -> list[Path]:
    """Expand inputs into readable units (files; TrackML folders into event prefixes), in order.

    An input that matches nothing raises InputError with ``on_error="fail"``; with ``"skip"`` it is recorded
    in ``skipped`` as ``(input, reason)``.
    """
    from trackformers.io import expand, trackml

    units: list[Path] = []
    for item in inputs:
        try:
            for path in expand([item]):
                if path.is_dir() and trackml.detect(path):
                    units.extend(trackml.prefixes(path))
                else:
                    units.append(path)
        except InputError as err:
            if on_error == "fail":
                raise
            skipped.append((str(item), str(err)))
    return units


def iter_events(units: Sequence[Path], *, volumes: Sequence[int] | None, on_error: str,
                skipped: list[tuple[str, str]], timer: StageTimer | None = None) -> Iterator[Event]:
    """Stream the events of ``units``; a unit that fails to read is raised (fail) or skipped and recorded."""
    from trackformers.io import read_events

    timer = timer or StageTimer()
    for unit in units:
        events = read_events([unit], volumes=volumes)
        while True:
            try:
                with timer("read"):
                    event = next(events)
            except StopIteration:
                break
            except Exception as err:  # noqa: BLE001 - any reader failure is a property of the file
                error = err if isinstance(err, InputError) else InputError(
                    f"{unit}: cannot read the file ({type(err).__name__}: {err}).")
                if on_error == "fail":
                    raise error from None
                skipped.append((str(unit), str(error)))
                break
            yield event


@dataclass
class Summary:
    """What a reconstruction run did: counts, per-stage seconds, skipped inputs, written files, metrics."""

    events: int = 0
    hits: int = 0
    tracks: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    skipped: list[tuple[str, str]] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    #: CUDA runs: (peak allocated, peak reserved) bytes over the whole run (peak statistics are reset when
    #: reconstruct_files starts), warm-up and graph captures included
    gpu_memory: tuple[int, int] | None = None
    #: with a hit filter: how many of ``hits`` it kept for the tracker (None without a filter)
    kept: int | None = None
    #: (the volume ids the model was trained on, hits read outside them) when the checkpoint names its volumes
    #: and the run kept every volume (no ``volumes``); None otherwise
    outside: tuple[list[int], int] | None = None

    def format(self) -> str:
        """A few lines: counts, then total and per-event milliseconds per stage."""
        n = max(self.events, 1)
        lines = [f"events {self.events}, hits {self.hits}, tracks {self.tracks}, skipped inputs "
                 f"{len(self.skipped)}", f"{'stage':<12}{'total s':>10}{'ms/event':>11}"]
        if self.kept is not None:
            share = 100.0 * self.kept / self.hits if self.hits else 0.0
            lines.insert(1, f"hit filter kept {self.kept} of {self.hits} hits ({share:.1f}%)")
        for stage in STAGES:
            s = self.seconds.get(stage, 0.0)
            lines.append(f"{stage:<12}{s:>10.3f}{1e3 * s / n:>11.1f}")
        total = sum(self.seconds.values())
        lines.append(f"{'total':<12}{total:>10.3f}{1e3 * total / n:>11.1f}")
        if self.gpu_memory is not None:
            lines.append(f"peak GPU memory {self.gpu_memory[0] / 2**20:.0f} MB allocated, "
                         f"{self.gpu_memory[1] / 2**20:.0f} MB reserved by the process")
        if self.outside is not None and self.outside[1]:
            names = ",".join(map(str, self.outside[0]))
            lines.append(f"note: {self.outside[1]} of the {self.hits} hits lie outside volumes {names}, the only ones "
                         f"the model was trained on, so its tracks there are not measured; --volumes {names} "
                         "reconstructs only those")
        return "\n".join(lines)


def reconstruct_files(inputs: Sequence[str | Path], *, module: Any, out_dir: str | Path,
                      clusterer: Callable[..., Tensor] | None = None, fmt: str = "csv",
                      on_error: str = "fail", volumes: Sequence[int] | None = None, evaluate: bool = False,
                      progress: bool | None = None, device: torch.device | None = None,
                      on_skip: Callable[[str, str], None] | None = None, cuda_graphs: bool = False,
                      precision: str = "fp32", hit_filter: HitFilter | None = None,
                      clean: dict[str, Any] | None = None, selector: TrackSelector | None = None) -> Summary:
    """Reconstruct every event of ``inputs`` with ``module`` and write one submission per event.

    Args:
        inputs: files, folders, TrackML prefixes or globs.
        module: a TrackingModule (``module.reconstruct(event, clusterer=...)``), already on its device.
        out_dir: output folder (created).
        clusterer: track builder passed to the module (None = the module's default).
        fmt: ``csv`` (``DIR/<event>-submission.csv``) or ``parquet`` (``DIR/submission.parquet/``).
        on_error: ``fail`` (raise the first bad input's InputError) or ``skip`` (record it, go on).
        volumes: keep only these volume ids (e.g. 7, 8, 9 for the pixel detector).
        evaluate: compute the metrics for events with truth (``summary.metrics``).
        progress: tqdm bar (None = only on a terminal).
        on_skip: called as ``on_skip(input, reason)`` when an input is skipped.
        cuda_graphs: replay the model from CUDA graphs (:class:`~trackformers.cuda_graph.GraphedForward`;
            it runs eagerly, and logs why, where it cannot).
        precision: ``fp32``, ``bf16`` (autocast) or ``auto`` (bf16 on a CUDA GPU that has it, else fp32).
        hit_filter: a :class:`~trackformers.filtering.HitFilter` (on the same device): two-stage
            reconstruction, see :func:`reconstruct_event` (with ``cuda_graphs`` the filter is replayed from
            graphs of its own); ``summary.kept`` counts the hits it kept.
        clean: track cleaning after clustering (keyword arguments of
            :func:`~trackformers.clustering.cleaning.clean_tracks`, ``{}`` = its defaults; None = off), see
            :func:`reconstruct_event`; its time is booked as ``clustering``.
        selector: a :class:`~trackformers.clustering.selection.TrackSelector` applied last (None = off), see
            :func:`reconstruct_event`.
    """
    from tqdm.auto import tqdm

    if on_error not in ("fail", "skip"):
        raise InputError(f"--on-error {on_error}: expected fail or skip.")
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: unknown output format; expected one of {', '.join(FORMATS)}.")
    summary = Summary()
    kept_before = hit_filter.hits_kept if hit_filter is not None else 0
    where = device or next(iter(module.parameters()), torch.empty(0)).device
    numerics = autocast_for(resolve_precision(precision, where), where)
    if where.type == "cuda":
        torch.cuda.reset_peak_memory_stats(where)
    forward = filter_forward = None
    if cuda_graphs:
        from trackformers.cuda_graph import GraphedForward

        forward = GraphedForward(module)
        if hit_filter is not None:
            filter_forward = GraphedForward(hit_filter.module)
    timer = StageTimer(device)
    timer.seconds = summary.seconds
    units = input_units(inputs, on_error, summary.skipped)
    per_event: list[dict[str, float]] = []
    seen: dict[int, str] = {}
    reported = 0
    bar = tqdm(total=len(units), unit="file", desc="reconstruct",
               disable=None if progress is None else not progress)
    last_unit = None
    # a model trained on some volumes (the shipped ones: the pixel detector) says so when the input holds others
    trained = getattr(module, "trained_volumes", None) if volumes is None else None
    outside = 0
    for event in iter_events(units, volumes=volumes, on_error=on_error, skipped=summary.skipped, timer=timer):
        if event.event_id in seen:
            err = InputError(f"{event.source}: event {event.event_id} was already read from "
                             f"{seen[event.event_id]}; expected each event once.")
            if on_error == "fail":
                raise err
            summary.skipped.append((event.source, str(err)))
            continue
        seen[event.event_id] = event.source
        if trained is not None:
            outside += int((~np.isin(event.hits["volume_id"].to_numpy(), trained)).sum())
        with numerics:
            sub = reconstruct_event(module, event, clusterer, timer, forward=forward, hit_filter=hit_filter,
                                    clean=clean, filter_forward=filter_forward, selector=selector)
        with timer("write"):
            summary.written.append(write_output(event, sub, out_dir, fmt))
        summary.events += 1
        summary.hits += len(sub)
        summary.tracks += int(sub["track_id"].nunique())
        if evaluate and event.truth is not None:
            from trackformers.metrics import evaluate_event

            per_event.append(evaluate_event(event=event, submission=sub))
        if event.source != last_unit:
            last_unit = event.source
            bar.update(1)
        bar.set_postfix(events=summary.events, hits=summary.hits)
        while on_skip is not None and reported < len(summary.skipped):
            on_skip(*summary.skipped[reported])
            reported += 1
    bar.close()
    while on_skip is not None and reported < len(summary.skipped):
        on_skip(*summary.skipped[reported])
        reported += 1
    if where.type == "cuda":
        summary.gpu_memory = (torch.cuda.max_memory_allocated(where), torch.cuda.max_memory_reserved(where))
    if hit_filter is not None:
        summary.kept = hit_filter.hits_kept - kept_before
    if trained is not None:
        summary.outside = (list(trained), outside)
    if evaluate and per_event:
        from trackformers.metrics import summarize

        summary.metrics = summarize(per_event)
    return summary
