"""Every malformed input of the corpus: ``reconstruct`` and ``evaluate`` exit non-zero with one clear
sentence (no traceback) and leave no output file; valid-but-odd inputs succeed with a correct result."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from corpus import Case
from corpus_formats import all_cases

from trackformers.cli import main
from trackformers.io import read_events
from trackformers.io.submission import read_submission
from trackformers.simulation import simulate_event

TINY_MODEL = {
    "encoder": {"class_path": "trackformers.models.encoder.Encoder",
                "init_args": {"d_model": 8, "n_heads": 2, "n_layers": 1, "backend": "dense", "window": None}},
    "task": {"class_path": "trackformers.models.tasks.EmbeddingTask", "init_args": {"dim": 3}},
}


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(args)
    return status, out.getvalue(), err.getvalue()


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def assert_one_sentence(case: Case, status: int, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert status != 0, f"{case.name}: exit status 0 for a malformed input"
    assert "Traceback" not in err, f"{case.name}: traceback\n{err}"
    assert len(lines) == 1 and lines[0].startswith("trackformers: error: "), f"{case.name}: {err!r}"
    assert len(lines[0]) > 40, f"{case.name}: message too terse: {lines[0]!r}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Case], Path, Path]:
    from trackformers.training.module import TrackingModule

    root = tmp_path_factory.mktemp("corpus")
    event = simulate_event(seed=5, pileup=0, volumes=(7, 8, 9), gun=6, event_id=1)
    cases = all_cases(event, root / "cases")
    ckpt = TrackingModule(**TINY_MODEL).export_checkpoint(root / "tiny.ckpt")
    subs = root / "perfect"
    subs.mkdir()
    pd.DataFrame({"event_id": 1, "hit_id": event.truth["hit_id"], "track_id": event.truth["particle_id"]}).to_csv(
        subs / f"{event.name}-submission.csv", index=False)
    return cases, ckpt, subs


def test_corpus_is_large_and_covers_every_format(corpus: tuple[list[Case], Path, Path]) -> None:
    cases = corpus[0]
    assert len(cases) >= 200
    assert {c.name.split("-")[0] for c in cases} == {"csv", "csv.gz", "parquet", "root"}


@pytest.mark.slow
def test_every_case_fails_cleanly_or_succeeds_correctly(corpus: tuple[list[Case], Path, Path],
                                                        tmp_path: Path) -> None:
    cases, ckpt, subs = corpus
    problems: list[str] = []
    for i, case in enumerate(cases):
        out = tmp_path / f"out{i}"
        status, _, err = run_cli(["reconstruct", str(case.input), "--checkpoint", str(ckpt), "--out", str(out),
                                  "--no-progress", "--device", "cpu"])
        try:
            if case.expect == "error":
                assert_one_sentence(case, status, err)
                assert files_in(out) == [], f"{case.name}: reconstruct left {files_in(out)}"
            else:
                assert status == 0, f"{case.name}: reconstruct failed on valid input: {err}"
                events = list(read_events(case.input))
                for event in events:
                    sub = read_submission(out / f"{event.name}-submission.csv")
                    assert sorted(sub["hit_id"]) == sorted(event.hits["hit_id"]), case.name
            js = tmp_path / f"metrics{i}.json"
            status, _, err = run_cli(["evaluate", str(case.input), str(subs if case.expect == "error" else out),
                                      "--json", str(js)])
            if case.expect == "ok":
                assert status == 0, f"{case.name}: evaluate failed on valid input: {err}"
                assert "trackml_score" in json.loads(js.read_text())
            else:
                assert_one_sentence(case, status, err)
                assert not js.exists(), f"{case.name}: evaluate left {js}"
        except AssertionError as fail:
            problems.append(str(fail).splitlines()[0][:300])
    assert not problems, f"{len(problems)} of {len(cases)} cases:\n" + "\n".join(problems)
