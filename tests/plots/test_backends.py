"""Backend comparison tables: errors against the reference are real measurements, timings fit the plot."""

from __future__ import annotations

import math

import pytest
import torch

from trackformers.attention import api
from trackformers.plots import backends, benchmark


@pytest.fixture
def broken_backend():
    """A registered backend that is wrong by 1 % (must show up as a forward and backward error)."""
    def run(q, k, v, layout, scale):
        return 1.01 * api._BACKENDS["reference"][0](q, k, v, layout, scale)

    api.backends()  # load the real ones first
    api.register("broken", run, lambda q, layout, needs_grad: None)
    yield "broken"
    api._BACKENDS.pop("broken", None)


def test_compare_backends_measures_errors(broken_backend):
    table = backends.compare_backends(lengths=(37, 11, 1), heads=2, dim=16, window=5).set_index("backend")
    assert set(api.backends()) <= set(table.index)
    assert table.loc["reference", "forward_error"] == 0 and table.loc["reference", "backward_error"] == 0
    assert table.loc["dense", "forward_error"] < 1e-5 and table.loc["dense", "backward_error"] < 1e-5
    assert table.loc["broken", "forward_error"] > 1e-3 and table.loc["broken", "backward_error"] > 1e-3
    for name, row in table.iterrows():  # every backend has a number or says why not
        assert not math.isnan(row["forward_error"]) or row["note"], name
        if math.isnan(row["backward_error"]):
            assert row["note"], name


def test_random_batch_is_seeded():
    a = backends.random_batch([7, 3], heads=1, dim=4, window=2, seed=3)
    b = backends.random_batch([7, 3], heads=1, dim=4, window=2, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a[:3], b[:3]))
    assert a[3].cu_seqlens.tolist() == [0, 7, 10] and a[3].window == 2


def test_time_backends_records_fit_the_benchmark_plot():
    records = backends.time_backends(sizes=(17, 31), heads=1, dim=16, window=4, repeats=1)
    assert {r["N"] for r in records} == {17, 31}
    for r in records:
        assert (r["fwd_ms"] is None) == bool(r["note"]) or r["note"].startswith("no backward")
    dense = [r for r in records if r["backend"] == "dense"]
    assert all(r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0 for r in dense)
    series = benchmark.benchmark_series(records, "fwd_ms")
    assert series["dense"][0] == [17, 31]
    table = benchmark.benchmark_table(records)
    assert list(table.index) == [17, 31] and table.loc[17, "dense"] == dense[0]["fwd_ms"]
    assert len(benchmark.plot_benchmark(records).axes) >= 1
