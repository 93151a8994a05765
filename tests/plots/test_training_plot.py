import numpy as np
import pytest

from trackformers.errors import InputError
from trackformers.plots.training import curve_points, plot_training_curve

RECORDS = [  # out of step order, one without the metric
    {"step": 400, "val/dm_efficiency": 0.5, "val/fake_rate": 0.3, "val/trackml_score": 0.4},
    {"step": 200, "val/dm_efficiency": 0.2, "val/fake_rate": 0.6, "val/trackml_score": 0.1},
    {"step": 300, "train/loss": 1.0},
]


def test_points_are_the_records_in_step_order() -> None:
    steps, values = curve_points(RECORDS, "val/dm_efficiency")
    assert steps.tolist() == [200, 400] and values.tolist() == [0.2, 0.5]


def test_plot_draws_each_metric() -> None:
    fig = plot_training_curve(RECORDS)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["dm_efficiency", "fake_rate", "trackml_score"]
    np.testing.assert_array_equal(lines[1].get_ydata(), [0.6, 0.3])


def test_missing_metric_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="'val/nope'"):
        plot_training_curve(RECORDS, keys=["val/nope"])
