"""Option parsers shared by several subcommands (not a command itself: the leading underscore)."""

from __future__ import annotations

from trackformers.errors import InputError

#: Volume groups accepted by --volumes besides plain TrackML volume ids.
VOLUME_GROUPS: dict[str, tuple[int, ...]] = {
    "pixel": (7, 8, 9), "short-strip": (12, 13, 14), "long-strip": (16, 17, 18),
    "strip": (12, 13, 14, 16, 17, 18),
}


def parse_volumes(text: str | None) -> list[int] | None:
    """``"pixel"``, ``"7,8,9"`` or a mix -> sorted volume ids; None keeps all."""
    if text is None:
        return None
    out: set[int] = set()
    for item in filter(None, (t.strip() for t in text.split(","))):
        if item in VOLUME_GROUPS:
            out.update(VOLUME_GROUPS[item])
            continue
        try:
            out.add(int(item))
        except ValueError:
            raise InputError(f"--volumes item {item!r} is neither a volume id nor one of "
                             f"{', '.join(VOLUME_GROUPS)}.") from None
    if not out:
        raise InputError(f"--volumes {text!r} selects no volume; expected ids or {', '.join(VOLUME_GROUPS)}.")
    return sorted(out)


def parse_backend(name: str | None) -> str | None:
    """``--backend NAME`` checked against the registered attention backends; None keeps the checkpoint's own.

    Checked here, so that an unknown name is blamed on the option rather than on the checkpoint it overrides.
    """
    if name is None:
        return None
    from trackformers.attention.api import check_backend_name

    check_backend_name(name, f"--backend {name}")
    return name


def check_processes(devices: int, num_nodes: int) -> None:
    """``--devices`` / ``--num-nodes`` of distributed prediction: at least one of each (0 or less would
    otherwise quietly run one process)."""
    if devices < 1:
        raise InputError(f"--devices {devices}: expected at least 1 process per node.")
    if num_nodes < 1:
        raise InputError(f"--num-nodes {num_nodes}: expected at least 1 node.")
