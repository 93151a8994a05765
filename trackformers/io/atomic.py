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
    if final.is_dir():  # os.replace would fail only after the work, with a traceback
        raise InputError(f"cannot write {final}: it is a folder; expected a file name.")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    except OSError as err:
        blocker = _file_in_the_way(final.parent)
        if blocker is not None:
            raise InputError(f"cannot write {final}: {blocker} is a file, not a folder.") from None
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


def check_destination(path: str | os.PathLike[str], *, option: str, folder: bool) -> None:
    """InputError naming ``option`` unless ``path`` can be written as a folder (``folder``) or as a file.

    Checked without creating anything, so that a command refuses a bad destination before its work (not after
    it) and leaves nothing behind: ``path`` must not be a file where a folder is wanted or a folder where a file
    is, no file may stand where one of its folders would go, and the nearest existing folder must be writable.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise InputError(f"{option} {path}: is a file, not a folder; expected a folder for the output.")
    if not folder and path.is_dir():
        raise InputError(f"{option} {path}: is a folder; expected the name of a file to write.")
    start = path if folder else path.parent
    blocker = _file_in_the_way(start)
    if blocker is not None:
        raise InputError(f"{option} {path}: {blocker} is a file, not a folder.")
    nearest = next((p for p in (start, *start.parents) if p.exists()), Path("."))
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: cannot write into {nearest}; expected a writable folder.")


def _file_in_the_way(folder: Path) -> Path | None:
    """The first of ``folder`` and its parents that exists but is not a folder, or None."""
    return next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)


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
