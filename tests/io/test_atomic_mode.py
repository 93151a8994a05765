"""Atomic outputs: the permissions of a plain file (0666 & ~umask), not mkstemp's 0600; refusals before any file;
load errors (trackformers.errors.load_error) that say what the user can act on."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trackformers.errors import InputError, load_error
from trackformers.io.atomic import atomic_path


def test_atomic_output_has_plain_file_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        target = tmp_path / "event000000001-submission.csv"
        with atomic_path(target) as tmp:
            tmp.write_text("event_id,hit_id,track_id\n")
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
        os.umask(0o077)
        with atomic_path(target) as tmp:
            tmp.write_text("event_id,hit_id,track_id\n")
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_atomic_path_refuses_a_folder_target_and_a_file_in_the_way(tmp_path: Path) -> None:
    """The refusals come before any temporary file exists: nothing is left behind."""
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match=r"folder: it is a folder; expected a file name\.$"):
        with atomic_path(tmp_path / "folder"):
            pass
    (tmp_path / "afile").write_text("keep me")
    with pytest.raises(InputError, match=r"afile is a file, not a folder\.$"):
        with atomic_path(tmp_path / "afile" / "sub" / "x.csv"):
            pass
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["afile", "folder"]
    assert (tmp_path / "afile").read_text() == "keep me"


def test_load_error_says_what_the_user_can_act_on() -> None:
    denied = load_error("checkpoint m.ckpt", PermissionError(13, "Permission denied"), "a checkpoint")
    assert str(denied) == "checkpoint m.ckpt: cannot be read (Permission denied); expected a checkpoint."
    junk = load_error("checkpoint m.ckpt", RuntimeError("PytorchStreamReader failed reading zip archive"), "x")
    assert "not a readable checkpoint" in str(junk)
