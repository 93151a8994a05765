"""``trackformers simulate``: files that read back as the simulated events, any --workers, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trackformers.cli import main
from trackformers.io import read_events
from trackformers.simulation import simulate


def test_writes_csv_that_reads_back(tmp_path, capsys):
    out = tmp_path / "events"
    rc = main(["simulate", "--events", "2", "--pileup", "1", "--seed", "3", "--out", str(out),
               "--volumes", "pixel", "--first-event-id", "1000", "--quiet"])
    assert rc == 0 and "wrote 2 event(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        f"event00000{i}-{t}.csv" for i in (1000, 1001) for t in ("hits", "particles", "truth")]
    got = list(read_events(out))
    want = list(simulate(2, seed=3, pileup=1, volumes=(7, 8, 9), first_event_id=1000))
    assert [e.event_id for e in got] == [1000, 1001]
    for g, w in zip(got, want, strict=True):
        pd.testing.assert_frame_equal(g.hits.reset_index(drop=True), w.hits, check_dtype=False)
        np.testing.assert_array_equal(g.truth["particle_id"], w.truth["particle_id"])


def test_workers_do_not_change_the_output(tmp_path):
    args = ["simulate", "--events", "3", "--pileup", "2", "--seed", "8", "--volumes", "8", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    one = sorted((tmp_path / "one").iterdir())
    two = sorted((tmp_path / "two").iterdir())
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 9
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two, strict=True))


def test_parquet_and_engine_options(tmp_path):
    out = tmp_path / "pq"
    assert main(["simulate", "--events", "1", "--out", str(out), "--format", "parquet", "--gun", "10",
                 "--gun-pt", "2,3", "--noise", "0.1", "--no-scattering", "--beam-sigma-z", "0", "--quiet"]) == 0
    (event,) = read_events(out)
    p = event.particles
    pt = np.hypot(p["px"], p["py"])
    assert len(p) == 10 and pt.between(2, 3).all()
    assert (event.truth["particle_id"] == 0).any()
    assert (p["vz"] == 0).all()  # --beam-sigma-z 0: every interaction at z = 0


@pytest.mark.parametrize("args, needle", [
    (["--events", "0"], "number of events"),
    (["--events", "2", "--pileup", "-1"], "pile-up"),
    (["--events", "2", "--volumes", "7,10"], "unknown volume id 10"),
    (["--events", "2", "--volumes", "pixels"], "--volumes"),
    (["--events", "2", "--workers", "0"], "--workers"),
    (["--events", "2", "--gun-pt", "5"], "--gun-pt"),
    # the engine's checks name the option the user typed, not the engine's setting
    (["--events", "2", "--eta-max", "5"], "--eta-max 5.0: expected 0 < |eta| range <= 4."),
    (["--events", "2", "--beam-sigma-z", "-5"], "--beam-sigma-z -5.0 mm: expected a beam-spot length in [0, 1000] mm."),
    (["--events", "2", "--gun", "2", "--gun-pt", "5,1"], "--gun-pt 5,1: expected 0 < low <= high GeV."),
    (["--events", "2", "--noise", "-1"], "--noise -1.0: expected a fraction >= 0."),
    (["--events", "2", "--efficiency", "2"], "--efficiency 2.0: expected a probability in [0, 1]."),
    # a negative id would name its files event-00000001-*, which no reader accepts
    (["--events", "2", "--first-event-id", "-1"], "--first-event-id -1: expected an event id >= 0"),
    # --gun 0 is not "no gun": that is leaving --gun out
    (["--events", "2", "--gun", "0"], "--gun 0: expected 1 to 65535 gun particles; leave --gun out"),
    (["--events", "2", "--gun", "-1"], "--gun -1: expected 1 to 65535"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, needle):
    rc = main(["simulate", *args, "--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc = main(["simulate", "--events", "1", "--out", str(blocker / "sub"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and f"{blocker} is a file, not a folder" in err and err.count("\n") == 1
    rc = main(["simulate", "--events", "1", "--out", str(blocker), "--quiet"])
    assert rc == 2 and f"--out {blocker}: is a file, not a folder" in capsys.readouterr().err
