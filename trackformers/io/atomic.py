"""Atomic output: write to a temporary name beside the target, then rename, so no partial file is left."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trackformers.errors import InputError


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it to ``final``, else delete it."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    except OSError as err:
        raise InputError(f"cannot write to folder {final.parent}: {err.strerror}.") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file 0600; give the result the permissions a plain open() would (0666 & ~umask),
        # so that a submission or checkpoint is readable by the colleagues a plain file would be readable by.
        os.chmod(tmp_path, _plain_file_mode())
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _plain_file_mode() -> int:
    try:  # Linux: read the umask without changing it (setting it, even briefly, races with other threads)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)  # elsewhere reading the umask means setting it; put it back at once
    os.umask(mask)
    return 0o666 & ~mask
