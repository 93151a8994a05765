import numpy as np
import pandas as pd
import pytest

from trackformers import Event, InputError


def _event(n: int = 4) -> Event:
    hits = pd.DataFrame({"hit_id": np.arange(1, n + 1), "x": np.ones(n), "y": np.ones(n), "z": np.zeros(n),
                         "volume_id": np.full(n, 8), "layer_id": np.full(n, 2), "module_id": np.arange(n)})
    truth = pd.DataFrame({"hit_id": np.arange(1, n + 1), "particle_id": np.array([0, 5, 5, 7]),
                          **{c: np.zeros(n) for c in ("tx", "ty", "tz", "tpx", "tpy", "tpz", "weight")}})
    return Event(event_id=3, hits=hits, truth=truth, source="mem")


def test_valid_event_passes():
    assert _event().validate().name == "event000000003"


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda e: e.hits.drop(columns="z", inplace=True), "missing column(s) z"),
        (lambda e: e.hits.__setitem__("x", [1.0, np.nan, 1.0, 1.0]), "'x' has non-finite value nan"),
        (lambda e: e.hits.__setitem__("hit_id", [1, 2, 2, 4]), "duplicate hit_id 2"),
        (lambda e: e.truth.__setitem__("hit_id", [1, 2, 3, 99]), "hit_id 99 is not in hits"),
        (lambda e: e.hits.__setitem__("z", [0.0, 1e9, 0.0, 0.0]), "'z' has value 1000000000.0 mm"),
        (lambda e: e.hits.__setitem__("volume_id", ["a", "b", "c", "d"]), "'volume_id' has dtype"),
    ],
)
def test_bad_events_name_the_problem(mutate, needle):
    event = _event()
    mutate(event)
    with pytest.raises(InputError, match="event 3") as info:
        event.validate()
    assert needle in str(info.value)
