"""Attention backends side by side, as tables for notebooks: agreement with ``reference`` and a small timing.

Both run every registered backend of :mod:`trackformers.attention` on the same random packed batch
q, k, v of shape (N_total, H, D) (events of ``lengths`` hits, φ-window half-width ``window``). A backend
that cannot run a call says why (its ``can_run`` sentence) instead of a number. On CPU the ``local`` kernels
run in Triton's interpreter (``TRITON_INTERPRET=1`` set before Triton is imported): right numbers, but
timings of the interpreter say nothing about the kernel, so :func:`time_backends` marks them.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import pandas as pd
import torch

from trackformers.attention import AttentionLayout, attend, backends, can_run


def random_batch(lengths: Sequence[int], *, heads: int, dim: int, window: int | None, seed: int = 0,
                 dtype: torch.dtype = torch.float32, device: str = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, AttentionLayout]:
    """Random q, k, v (N_total, H, D) from a seeded generator and the layout of events of ``lengths`` hits."""
    g = torch.Generator().manual_seed(seed)
    n = int(sum(lengths))
    q, k, v = (torch.randn(n, heads, dim, generator=g).to(device=device, dtype=dtype) for _ in range(3))
    return q, k, v, AttentionLayout.from_lengths(list(lengths), device=device, window=window)


def _grads(backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
           do: torch.Tensor) -> torch.Tensor:
    """(3, N_total, H, D) gradients of <attend(q, k, v), do> with respect to q, k, v."""
    qg, kg, vg = (t.detach().clone().requires_grad_() for t in (q, k, v))
    (attend(qg, kg, vg, layout, backend=backend) * do).sum().backward()
    return torch.stack([qg.grad, kg.grad, vg.grad])


def compare_backends(*, lengths: Sequence[int] = (257, 131), heads: int = 2, dim: int = 16,
                     window: int | None = 16, seed: int = 0, dtype: torch.dtype = torch.float32,
                     device: str = "cpu") -> pd.DataFrame:
    """Max |output − reference| and max |gradient − reference gradient| of every backend.

    Columns: backend, forward_error, backward_error (NaN where it did not run), note (the reason it did not
    run, else empty). The reference itself is listed with errors 0.
    """
    q, k, v, layout = random_batch(lengths, heads=heads, dim=dim, window=window, seed=seed, dtype=dtype,
                                   device=device)
    do = torch.randn(q.shape, generator=torch.Generator().manual_seed(seed + 1)).to(q)
    with torch.no_grad():
        ref = attend(q, k, v, layout, backend="reference").float()
    ref_grad = _grads("reference", q, k, v, layout, do).float()
    rows = []
    for name in backends():
        row: dict[str, Any] = {"backend": name, "forward_error": float("nan"), "backward_error": float("nan"),
                               "note": ""}
        why = can_run(name, q, layout, needs_grad=False)
        if why is None:
            with torch.no_grad():
                out = attend(q, k, v, layout, backend=name).float()
            row["forward_error"] = float((out - ref).abs().max())
            why = can_run(name, q, layout, needs_grad=True)
            if why is None:
                grad = _grads(name, q, k, v, layout, do).float()
                row["backward_error"] = float((grad - ref_grad).abs().max())
            else:
                row["note"] = f"no backward: {why}"
        else:
            row["note"] = why
        rows.append(row)
    return pd.DataFrame(rows)


def _forward(backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
             do: torch.Tensor) -> torch.Tensor:
    return attend(q, k, v, layout, backend=backend)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: compilation, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_backends(*, sizes: Sequence[int] = (256, 1024), heads: int = 2, dim: int = 16, window: int = 64,
                  repeats: int = 5, seed: int = 0, device: str = "cpu") -> list[dict[str, Any]]:
    """Median wall time (ms) of forward and forward+backward per backend and event size N (one event each).

    Records ``{backend, N, D, w, H, case, device, fwd_ms, fwdbwd_ms, note}`` — the schema
    :func:`trackformers.plots.benchmark.plot_benchmark` draws; times are None where a backend cannot run
    (the note says why), and for ``local`` in Triton's CPU interpreter (not a kernel timing).
    """
    interpreted = device == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"
    records = []
    for n in sizes:
        q, k, v, layout = random_batch([n], heads=heads, dim=dim, window=window, seed=seed, device=device)
        do = torch.randn_like(q)
        for name in backends():
            rec: dict[str, Any] = {"backend": name, "N": n, "D": dim, "w": window, "H": heads,
                                   "case": "1 event", "device": device, "fwd_ms": None, "fwdbwd_ms": None,
                                   "note": ""}
            if name == "local" and interpreted:
                rec["note"] = "Triton interpreter on CPU: not timed"
            elif (why := can_run(name, q, layout, needs_grad=False)) is not None:
                rec["note"] = why
            else:
                args = (name, q, k, v, layout, do)
                with torch.no_grad():
                    rec["fwd_ms"] = _median_ms(partial(_forward, *args), repeats)
                if (why := can_run(name, q, layout, needs_grad=True)) is None:
                    rec["fwdbwd_ms"] = _median_ms(partial(_grads, *args), repeats)
                else:
                    rec["note"] = f"no backward: {why}"
            records.append(rec)
    return records


def default_device() -> str:
    """``"cuda"`` when a GPU is present; else ``"cpu"``, with ``TRITON_INTERPRET=1`` set so that the ``local``
    kernels run in Triton's interpreter (effective only before Triton is first imported)."""
    if torch.cuda.is_available():
        return "cuda"
    os.environ.setdefault("TRITON_INTERPRET", "1")
    return "cpu"


def benchmark_records(path: str | os.PathLike[str] | None = None, **timing: Any) -> list[dict[str, Any]]:
    """Benchmark records from the JSON at ``path`` (or the repository's, see
    :func:`~trackformers.plots.benchmark.default_benchmark_json`); without one, a small :func:`time_backends`
    run with the ``timing`` arguments."""
    from trackformers.plots.benchmark import default_benchmark_json, load_benchmark

    path = path or default_benchmark_json()
    return load_benchmark(path) if path is not None else time_backends(**timing)
