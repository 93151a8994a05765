"""The one public attention entry point: :func:`attend` over a packed (varlen) batch of φ-sorted hits.

Tensors: q, k, v have shape (N_total, H, D) — the hits of E events concatenated, each event's hits
sorted by φ; ``layout.cu_seqlens`` (E + 1,) int32 holds the event offsets. The output has the same shape
and dtype as q.

Backends register themselves with :func:`register`; ``backend="auto"`` picks the first backend of
:data:`AUTO_ORDER` (:data:`AUTO_ORDER_CPU` for CPU tensors) whose ``can_run`` accepts the call and logs
why it skipped the others. An explicitly requested backend never falls back: it raises
:class:`BackendUnavailable` saying why it cannot run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttentionLayout:
    """Which keys each query of a packed batch may attend to.

    Attributes:
        cu_seqlens: (E + 1,) int32 event offsets into the packed hit dimension, ``cu_seqlens[0] == 0``.
        max_seqlen: the largest event length (Python int, so that kernels need no device sync).
        window: half-width w in φ-sorted positions: query i attends to keys j of its event with circular
            distance min(|i - j|, L - |i - j|) <= w. None (or 2w + 1 >= L) means the whole event.
        groups: optional (N_total,) integer group id per hit; attend only within the same group.
        eta_phi: optional (N_total, 2) float (η, φ [rad]) per hit, used with ``cone``.
        cone: optional ΔR radius: attend only if sqrt(Δη² + Δφ²) <= cone (Δφ wrapped to (-π, π]).
    """

    cu_seqlens: torch.Tensor
    max_seqlen: int
    window: int | None = None
    groups: torch.Tensor | None = None
    eta_phi: torch.Tensor | None = None
    cone: float | None = None

    @staticmethod
    def from_lengths(lengths: list[int] | torch.Tensor, *, device: torch.device | str = "cpu",
                     **kwargs: object) -> AttentionLayout:
        """Build a layout from per-event hit counts (other fields as keyword arguments)."""
        lengths = torch.as_tensor(lengths, dtype=torch.int32)
        cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(lengths, 0)
        max_len = int(lengths.max()) if len(lengths) else 0
        return AttentionLayout(cu_seqlens=cu.to(device), max_seqlen=max_len, **kwargs)  # type: ignore[arg-type]

    @property
    def num_events(self) -> int:
        return int(self.cu_seqlens.numel()) - 1

    @property
    def has_extra_masks(self) -> bool:
        """True when groups or a ΔR cone restrict attention beyond the φ window."""
        return self.groups is not None or self.cone is not None


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run this call (the message says why)."""


#: A backend: ``run(q, k, v, layout, scale) -> out`` and ``can_run(q, layout, needs_grad) -> reason|None``.
RunFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, AttentionLayout, float], torch.Tensor]
CanRunFn = Callable[[torch.Tensor, AttentionLayout, bool], str | None]

_BACKENDS: dict[str, tuple[RunFn, CanRunFn]] = {}
#: Preference of ``auto``: fastest first.
AUTO_ORDER: tuple[str, ...] = ("local", "flex", "dense", "reference")
#: On CPU, SDPA (dense) beats FlexAttention, which there runs eagerly (scores for all pairs) or pays a
#: compilation per length bucket; flex stays the fallback for events too long for dense.
AUTO_ORDER_CPU: tuple[str, ...] = ("local", "dense", "flex", "reference")


def register(name: str, run: RunFn, can_run: CanRunFn) -> None:
    """Register a backend under ``name`` (called at import of each backend module)."""
    _BACKENDS[name] = (run, can_run)


def backends() -> list[str]:
    """Names of the registered backends."""
    _load_all()
    return sorted(_BACKENDS)


def check_backend_name(name: str, what: str) -> None:
    """InputError naming ``what`` (e.g. ``--backend bogus``) unless ``name`` is ``auto`` or a registered backend."""
    from trackformers.errors import InputError

    if name != "auto" and name not in backends():
        raise InputError(f"{what}: unknown attention backend; expected auto or one of {', '.join(backends())}.")


def can_run(backend: str, q: torch.Tensor, layout: AttentionLayout, *, needs_grad: bool | None = None) -> str | None:
    """None if ``backend`` can run this call, else a sentence saying why not."""
    _load_all()
    if backend not in _BACKENDS:
        return f"unknown attention backend '{backend}'; expected one of {', '.join(sorted(_BACKENDS))}"
    grad = torch.is_grad_enabled() and q.requires_grad if needs_grad is None else needs_grad
    return _BACKENDS[backend][1](q, layout, grad)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout, *,
           backend: str = "auto", scale: float | None = None) -> torch.Tensor:
    """Masked softmax attention over a packed batch; see the module docstring for shapes.

    ``scale`` defaults to 1/sqrt(D).
    """
    _load_all()
    if q.dim() != 3 or k.shape != q.shape or v.shape[:2] != q.shape[:2]:
        raise ValueError(f"q, k, v must be (N_total, H, D) of equal N and H; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if backend == "auto":
        for name in AUTO_ORDER_CPU if q.device.type == "cpu" else AUTO_ORDER:
            if name not in _BACKENDS:
                continue
            reason = _BACKENDS[name][1](q, layout, needs_grad)
            if reason is None:
                return _run(name, q, k, v, layout, scale)
            log.info("attention auto: skipped %s: %s", name, reason)
        raise BackendUnavailable("no attention backend can run this call")
    reason = can_run(backend, q, layout, needs_grad=needs_grad)
    if reason is not None:
        raise BackendUnavailable(f"attention backend '{backend}' cannot run: {reason}")
    return _run(backend, q, k, v, layout, scale)


#: Backends that read q, k, v through their strides (any layout with a unit last stride, e.g. the views of a
#: fused qkv projection); the others get contiguous copies.
STRIDED: frozenset[str] = frozenset({"local"})


def _run(name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
         scale: float) -> torch.Tensor:
    if name not in STRIDED:
        q, k, v = (t.contiguous() for t in (q, k, v))
    return _BACKENDS[name][0](q, k, v, layout, scale)


def _load_all() -> None:
    """Import the backend modules so that they register (idempotent, cheap after the first call)."""
    import importlib

    for mod in ("reference", "dense", "flex", "local"):
        try:
            importlib.import_module(f"trackformers.attention.{mod}")
        except ModuleNotFoundError as err:  # a backend module not (yet) present, or its library missing
            if err.name and err.name.startswith("trackformers.attention"):
                continue
            raise
