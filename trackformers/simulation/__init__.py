"""Event simulation: the built-in TrackML-geometry engine (numpy) or ACTS Fatras (``engine="acts"``).

``simulate_event`` returns one validated :class:`~trackformers.events.Event`; ``simulate`` yields
``n_events`` independent, reproducible events (event ``i`` is seeded from ``SeedSequence(seed).spawn``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from trackformers.errors import InputError
from trackformers.events import Event
from trackformers.simulation.generator import check_pileup
from trackformers.simulation.geometry import LAYERS, VOLUME_IDS, select_volumes

ENGINES: tuple[str, ...] = ("builtin", "acts")

__all__ = ["ENGINES", "LAYERS", "VOLUME_IDS", "event_seed", "simulate", "simulate_event", "select_volumes"]


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or int(seed) < 0:
        raise InputError(f"seed = {seed!r}; expected a non-negative integer.")
    return int(seed)


def event_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed of event ``index`` of a run seeded ``seed``: independent streams, same for any run length."""
    return np.random.SeedSequence(_check_seed(seed), spawn_key=(int(index),))


def simulate_event(*, seed: int | np.random.SeedSequence, pileup: float = 0.0, volumes: object = None,
                   engine: str = "builtin", event_id: int = 0, **config: object) -> Event:
    """Simulate one event.

    Args:
        seed: non-negative integer (or a ``numpy.random.SeedSequence``); the event is a pure function of it.
        pileup: μ; the event holds ``1 + Poisson(μ)`` interactions (μ = 0: exactly one).
        volumes: TrackML volume ids to simulate (None = all; e.g. ``(7, 8, 9)`` for the pixel detector).
        engine: ``"builtin"`` or ``"acts"`` (needs pyacts).
        event_id: the event's id.
        config: engine options, see :class:`trackformers.simulation.builtin.Config`.
    """
    if not isinstance(seed, np.random.SeedSequence):
        seed = _check_seed(seed)
    if engine == "builtin":
        from trackformers.simulation import builtin

        return builtin.simulate_event(seed=seed, pileup=pileup, volumes=volumes, event_id=event_id, **config)
    if engine == "acts":
        from trackformers.simulation import acts

        return acts.simulate_event(seed=seed, pileup=pileup, volumes=volumes, event_id=event_id, **config)
    raise InputError(f"unknown simulation engine '{engine}'; expected one of {', '.join(ENGINES)}.")


def simulate(n_events: int, *, seed: int, pileup: float = 0.0, volumes: object = None,
             engine: str = "builtin", first_event_id: int = 0, **config: object) -> Iterator[Event]:
    """Yield ``n_events`` events; event ``i`` has id ``first_event_id + i``, seed ``event_seed(seed, i)``.

    Arguments are checked here, before the first event is made (the events themselves come lazily).
    """
    if isinstance(n_events, bool) or not isinstance(n_events, int | np.integer) or n_events < 1:
        raise InputError(f"number of events = {n_events!r}; expected a positive integer.")
    _check_seed(seed)
    select_volumes(volumes)  # fail here, not lazily at the first event
    check_pileup(pileup)
    if engine not in ENGINES:
        raise InputError(f"unknown simulation engine '{engine}'; expected one of {', '.join(ENGINES)}.")

    def events() -> Iterator[Event]:
        for i in range(int(n_events)):
            yield simulate_event(seed=event_seed(seed, i), pileup=pileup, volumes=volumes, engine=engine,
                                 event_id=first_event_id + i, **config)

    return events()
