"""Atomic outputs get the permissions of a plain file (0666 & ~umask), not mkstemp's 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

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
