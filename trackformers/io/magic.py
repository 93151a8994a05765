"""File-format sniffing by the first bytes of a file (for inputs whose name has no telling suffix)."""

from __future__ import annotations

from pathlib import Path


def has_magic(path: Path, magic: bytes) -> bool:
    """True when the file at ``path`` starts with ``magic``; False when it does not or cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False
