"""``trackformers evaluate``: JSON values against evaluate_event, submission layouts, bad input → exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "metrics"))
from metric_events import TRACK, hand_event, perfect_submission, random_event, submission  # noqa: E402

from trackformers.cli import main  # noqa: E402
from trackformers.io import trackml  # noqa: E402
from trackformers.io.submission import write_submission  # noqa: E402
from trackformers.metrics import evaluate_event  # noqa: E402

HEADLINE = ("trackml_score", "dm_efficiency", "perfect_efficiency", "fake_rate", "duplicate_rate")


@pytest.fixture
def data(tmp_path: Path):
    """Three events (hand event 1, random events 2 and 3) and their submission folder."""
    events = [hand_event()] + [random_event(np.random.default_rng(i), n_particles=30, max_hits=10, n_noise=10,
                                            event_id=i) for i in (2, 3)]
    subs = [submission(TRACK), perfect_submission(events[1]), perfect_submission(events[2])]
    subs[2]["track_id"] = np.random.default_rng(9).permutation(subs[2]["track_id"].to_numpy())
    for event, sub in zip(events, subs):
        trackml.write_event(event, tmp_path / "events")
        write_submission(sub, tmp_path / "subs" / f"{event.name}-submission.csv", event_id=event.event_id)
    return tmp_path, events, subs


def test_json_holds_means_over_events(data, capsys):
    tmp, events, subs = data
    assert main(["evaluate", str(tmp / "events"), str(tmp / "subs"), "--json", str(tmp / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "trackml_score" in out and "mean over 3 events" in out
    summary = json.loads((tmp / "m.json").read_text())
    per_event = [evaluate_event(event=e, submission=s) for e, s in zip(events, subs)]
    assert [e["event_id"] for e in summary["per_event"]] == [1, 2, 3]
    for key in HEADLINE:
        # NaN-aware: event 3 (shuffled tracks) has no purity-matched particle, so no duplicate rate
        assert summary[key] == pytest.approx(np.nanmean([e[key] for e in per_event])), key
        got = [np.nan if e[key] is None else e[key] for e in summary["per_event"]]
        assert got == pytest.approx([e[key] for e in per_event], nan_ok=True)
    assert summary["per_event"][2]["duplicate_rate"] is None
    assert summary["per_event"][1]["trackml_score"] == pytest.approx(1.0)
    assert summary["binned"]["efficiency_pt"][0]["lo"] == 0.0
    assert not list(tmp.glob(".*.part"))


def test_single_csv_with_event_ids_and_cuts(data, capsys):
    tmp, events, subs = data
    both = pd.concat([s.assign(event_id=e.event_id) for e, s in zip(events, subs)])
    both[["event_id", "hit_id", "track_id"]].to_csv(tmp / "all.csv", index=False)
    assert main(["evaluate", str(tmp / "events"), str(tmp / "all.csv"), "--json", str(tmp / "m.json"),
                 "--pt-min", "0.4"]) == 0
    first = json.loads((tmp / "m.json").read_text())["per_event"][0]
    assert first["n_reconstructable"] == 3 and first["perfect_efficiency"] == pytest.approx(1 / 3)


def test_volume_selection_drops_other_hits(data, capsys):
    tmp, events, _ = data
    event = events[1]
    event.hits.loc[event.hits.index[:5], "volume_id"] = 12
    trackml.write_event(event, tmp / "events")
    assert main(["evaluate", str(tmp / "events" / event.name), str(tmp / "subs"), "--volumes", "pixel",
                 "--json", str(tmp / "v.json")]) == 0
    (only,) = json.loads((tmp / "v.json").read_text())["per_event"]
    assert only["n_hits"] == len(event.hits) - 5


def _bad(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("trackformers: error: ")
    for needle in needles:
        assert needle in err, err


def test_submission_missing_a_hit(data, capsys):
    tmp, events, subs = data
    write_submission(subs[0].iloc[1:], tmp / "subs" / "event000000001-submission.csv", event_id=1)
    _bad(["evaluate", str(tmp / "events"), str(tmp / "subs")], capsys,
         "event000000001-submission.csv", "hit_id 1 has no track")


def test_submission_assigning_a_hit_twice(data, capsys):
    tmp, events, subs = data
    write_submission(pd.concat([subs[0], subs[0].iloc[[4]]]), tmp / "subs" / "event000000001-submission.csv",
                     event_id=1)
    _bad(["evaluate", str(tmp / "events"), str(tmp / "subs")], capsys, "hit_id 5 is assigned twice")


def test_missing_submission_file(data, capsys):
    tmp, *_ = data
    (tmp / "subs" / "event000000002-submission.csv").unlink()
    _bad(["evaluate", str(tmp / "events"), str(tmp / "subs")], capsys,
         "no submission for event000000002", "event000000002-submission.csv")


def test_missing_event_in_single_csv(data, capsys):
    tmp, *_ = data
    (tmp / "one.csv").write_text("event_id,hit_id,track_id\n1,1,1\n")
    _bad(["evaluate", str(tmp / "events" / "event000000002"), str(tmp / "one.csv")], capsys,
         "no rows with event_id 2")


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("event_id,hit_id,track_id\n1,1,x\n", ("column 'track_id' has value 'x' on line 2",)),
        ("event_id,hit_id\n1,1\n", ("missing column(s) track_id",)),
        ("event_id,hit_id,track_id\n1,1,\n", ("column 'track_id' has missing/NaN value",)),
        ("", ("the file is empty",)),
    ],
)
def test_bad_submission_csv(data, capsys, text, needles):
    tmp, *_ = data
    (tmp / "bad.csv").write_text(text)
    _bad(["evaluate", str(tmp / "events"), str(tmp / "bad.csv")], capsys, "bad.csv", *needles)


def test_bad_event_files(data, capsys):
    tmp, *_ = data
    hits = tmp / "events" / "event000000002-hits.csv"
    df = pd.read_csv(hits)
    df.loc[3, "hit_id"] = df.loc[2, "hit_id"]
    df.to_csv(hits, index=False)
    _bad(["evaluate", str(tmp / "events"), str(tmp / "subs")], capsys, "event000000002-hits.csv",
         f"duplicate hit_id {df.loc[2, 'hit_id']}")
    df.drop(columns="z").to_csv(hits, index=False)
    _bad(["evaluate", str(tmp / "events"), str(tmp / "subs")], capsys, "missing column(s) z")
    (tmp / "events" / "event000000003-truth.csv").unlink()
    _bad(["evaluate", str(tmp / "events" / "event000000003"), str(tmp / "subs")], capsys,
         "no truth table; evaluation needs truth")
    _bad(["evaluate", str(tmp / "nowhere"), str(tmp / "subs")], capsys, "nowhere: no such file or folder")
    _bad(["evaluate", str(tmp / "events"), str(tmp / "nosubs")], capsys, "nosubs: no such submission")


def test_plots_are_written(data, capsys):
    tmp, *_ = data
    assert main(["evaluate", str(tmp / "events"), str(tmp / "subs"), "--plots", str(tmp / "plots")]) == 0
    assert (tmp / "plots" / "efficiency_pt.png").is_file() and "plot file(s)" in capsys.readouterr().out


def test_plots_without_plot_module(data, capsys, monkeypatch):
    tmp, *_ = data
    monkeypatch.setitem(sys.modules, "trackformers.plots", None)  # import now fails as if absent
    _bad(["evaluate", str(tmp / "events"), str(tmp / "subs"), "--plots", str(tmp / "plots")], capsys,
         "--plots needs the trackformers.plots module")
    assert not (tmp / "plots").exists()


@pytest.mark.parametrize(
    ("mutate", "needles"),
    [
        (lambda p: p.write_text(p.read_text().replace("\n2,", "\n2x,", 1)), ("hit_id' has value '2x'",)),
        (lambda p: p.write_text(p.read_text().replace("\n3,", "\n3,abc#", 1)), ("column 'x' has value",)),
        (lambda p: pd.read_csv(p).assign(y=lambda d: d.y.where(d.hit_id != 4)).to_csv(p, index=False),
         ("column 'y' has missing/NaN value on line 5",)),
        (lambda p: p.write_text(""), ("the file is empty",)),
        (lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]), ("on line",)),
        (lambda p: p.unlink(), ("no such file",)),
    ],
)
def test_bad_hits_via_cli(data, capsys, mutate, needles):
    tmp, *_ = data
    hits = tmp / "events" / "event000000001-hits.csv"
    mutate(hits)
    _bad(["evaluate", str(tmp / "events" / "event000000001"), str(tmp / "subs")], capsys, *needles)


def test_truncated_gzip_via_cli(data, capsys):
    tmp, events, _ = data
    trackml.write_event(events[0], tmp / "gz", compress=True)
    hits = tmp / "gz" / "event000000001-hits.csv.gz"
    hits.write_bytes(hits.read_bytes()[:60])
    _bad(["evaluate", str(tmp / "gz"), str(tmp / "subs")], capsys, "event000000001-hits.csv.gz",
         "cannot be read as CSV")


@pytest.mark.parametrize(("option", "value", "needle"),
                         [("--pt-min", "nan", "--pt-min nan"), ("--eta-max", "-1", "--eta-max -1.0"),
                          ("--min-hits", "0", "--min-hits 0")])
def test_bad_cuts(data, capsys, option, value, needle):
    tmp, *_ = data
    _bad(["evaluate", str(tmp / "events"), str(tmp / "subs"), option, value], capsys, needle)


def _parquet_dataset(tmp: Path, events, subs) -> Path:
    """What ``reconstruct --format parquet --out tmp/pq`` writes: tmp/pq/submission.parquet/<event>.parquet."""
    from trackformers.inference import write_output

    for event, sub in zip(events, subs):
        write_output(event, sub, tmp / "pq", "parquet")
    return tmp / "pq"


@pytest.mark.parametrize("where", ["out", "dataset", "one_file"])
def test_parquet_submissions_score_as_the_csv_ones(data, capsys, where):
    tmp, events, subs = data
    out = _parquet_dataset(tmp, events, subs)
    path = {"out": out, "dataset": out / "submission.parquet", "one_file": tmp / "all.parquet"}[where]
    if where == "one_file":  # the data set read as one table (pandas reads the folder so) and written as one file
        pd.read_parquet(out / "submission.parquet").to_parquet(path)
    assert main(["evaluate", str(tmp / "events"), str(tmp / "subs"), "--json", str(tmp / "csv.json")]) == 0
    assert main(["evaluate", str(tmp / "events"), str(path), "--json", str(tmp / "pq.json")]) == 0
    assert json.loads((tmp / "pq.json").read_text()) == json.loads((tmp / "csv.json").read_text())


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.assign(track_id=d.track_id + 0.5),
         "column 'track_id' has value 1.5 at row 0; expected an integer (an integer column, not floats)."),
        (lambda d: d.assign(track_id=d.track_id.astype("float64")),  # whole numbers, but a float column
         "column 'track_id' has value 1.0 at row 0; expected an integer (an integer column, not floats)."),
        (lambda d: d.drop(columns="track_id"), "missing column(s) track_id; found event_id, hit_id."),
        (lambda d: d.iloc[1:], "(event 1): hit_id 1 has no track (1 of 21 hits missing)"),
        (lambda d: d.assign(hit_id=d.hit_id.astype("uint64") + np.uint64(2**63)),
         "column 'hit_id' has value 9223372036854775809 at row 0; expected an integer from -2**63 to 2**63 - 1."),
        (None, "cannot be read as Parquet"),
    ],
)
def test_bad_parquet_submission(data, capsys, mutate, needle):
    tmp, events, subs = data
    path = _parquet_dataset(tmp, events[:1], subs[:1]) / "submission.parquet" / "event000000001.parquet"
    if mutate is None:
        path.write_bytes(b"PAR1 but nothing else")
    else:
        mutate(pd.read_parquet(path)).to_parquet(path)
    _bad(["evaluate", str(tmp / "events" / "event000000001"), str(tmp / "pq")], capsys, str(path), needle)


def test_missing_parquet_submission_names_both_layouts(data, capsys):
    tmp, events, subs = data
    out = _parquet_dataset(tmp, events[:1], subs[:1])
    _bad(["evaluate", str(tmp / "events"), str(out)], capsys,
         f"{out}: no submission for event000000002; expected {out / 'event000000002-submission.csv'} or "
         f"{out / 'submission.parquet' / 'event000000002.parquet'}.")


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--json", "afile/x.json", "--json {tmp}/afile/x.json: {tmp}/afile is a file, not a folder."),
    ("--json", "adir", "--json {tmp}/adir: is a folder; expected the name of a file to write."),
    ("--plots", "afile", "--plots {tmp}/afile: is a file, not a folder; expected a folder for the output."),
    ("--plots", "afile/plots", "--plots {tmp}/afile/plots: {tmp}/afile is a file, not a folder."),
])
def test_destinations_are_checked_before_the_work(data, capsys, option, value, needle):
    tmp, *_ = data
    (tmp / "afile").write_text("keep me")
    (tmp / "adir").mkdir()
    assert main(["evaluate", str(tmp / "events"), str(tmp / "subs"), option, str(tmp / value)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no metrics table: a refusal after it would read as a failed evaluation
    assert err == f"trackformers: error: {needle.format(tmp=tmp)}\n"
    assert (tmp / "afile").read_text() == "keep me" and not any((tmp / "adir").iterdir())
