"""``trackformers convert``: lossless CSV <-> ROOT <-> Parquet chains, selections, CLI errors, atomicity."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared builders beside this file
from make_io_events import assert_events_equal, random_event  # noqa: E402

from trackformers.cli import main
from trackformers.commands._options import parse_volumes
from trackformers.commands.convert import convert, parse_events
from trackformers.errors import InputError
from trackformers.io import formats, read_events, root

EVENTS = [(1000, 101), (1001, 59), (1002, 2)]


def _events():
    return [random_event(e, n) for e, n in EVENTS]


def test_root_parquet_root_chain_is_lossless(tmp_path: Path):
    events = _events()
    root.write(events, tmp_path / "a.root")
    convert(tmp_path / "a.root", tmp_path / "pq", to="parquet")
    convert(tmp_path / "pq", tmp_path / "b", to="root")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["hits.root", "particles.root"]
    for a, b in zip(events, read_events(tmp_path / "b")):
        assert_events_equal(a, b)


@pytest.mark.parametrize("csv", ["csv", "csv.gz"])
def test_csv_root_parquet_csv_chain_is_lossless(tmp_path: Path, csv: str):
    if "trackml" not in formats():  # the CSV module is written separately; only this chain needs it
        pytest.skip("trackformers.io.trackml not available")
    events = _events()
    formats()["trackml"].write(events, tmp_path / "csv0")
    convert(tmp_path / "csv0", tmp_path / "r.root", to="root")
    convert(tmp_path / "r.root", tmp_path / "pq", to="parquet")
    written = convert(tmp_path / "pq", tmp_path / "csv1", to=csv)
    assert all(p.name.endswith(csv.replace("csv", ".csv")) for p in written)
    back = list(read_events(tmp_path / "csv1"))
    assert [e.event_id for e in back] == [e for e, _ in EVENTS]
    for a, b in zip(events, back):
        assert_events_equal(a, b)


def test_selections(tmp_path: Path):
    events = _events()
    root.write(events, tmp_path / "a.root")
    convert(tmp_path / "a.root", tmp_path / "sel", to="parquet", volumes=parse_volumes("pixel,17"),
            events=parse_events("1001-1002"))
    back = list(read_events(tmp_path / "sel"))
    assert [e.event_id for e in back] == [1001, 1002]
    assert set(back[0].hits["volume_id"]) <= {7, 8, 9, 17}
    keep = events[1].hits["volume_id"].isin([7, 8, 9, 17])
    assert len(back[0].hits) == keep.sum()


def test_parsers():
    assert parse_events("5,1000-1003") == [5, 1000, 1001, 1002, 1003]
    assert parse_volumes("pixel, 13") == [7, 8, 9, 13]
    assert parse_volumes(None) is None and parse_events(None) is None
    for bad in ("x", "9-3", ","):
        with pytest.raises(InputError):
            parse_events(bad)
    with pytest.raises(InputError, match="pixels"):
        parse_volumes("pixels")


def test_cli_success_and_bad_input_leave_no_partial_output(tmp_path: Path, capsys: pytest.CaptureFixture):
    root.write(_events(), tmp_path / "a.root")
    ok = ["convert", str(tmp_path / "a.root"), str(tmp_path / "ok"), "--to", "parquet", "--quiet"]
    assert main(ok) == 0
    assert (tmp_path / "ok" / "hits.parquet").is_file()
    capsys.readouterr()
    cut = tmp_path / "cut.root"
    cut.write_bytes((tmp_path / "a.root").read_bytes()[:3000])
    before = set(tmp_path.iterdir())
    for argv in (
        [str(cut), str(tmp_path / "out1"), "--to", "csv"],
        [str(tmp_path / "a.root"), str(tmp_path / "out2"), "--to", "root", "--events", "1000,77"],
        [str(tmp_path / "nothing.root"), str(tmp_path / "out3"), "--to", "root"],
    ):
        assert main(["convert", *argv, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("trackformers: error:") and len(err.splitlines()) == 1, err
        assert "Traceback" not in err
    assert set(tmp_path.iterdir()) == before  # no output and no leftover staging folder
