"""The ``trackformers`` console script.

Subcommands live one per module in :mod:`trackformers.commands`; each module defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. A module with ``PASSTHROUGH = True`` (the Lightning
``fit/validate/test/predict`` commands) receives the raw argument list instead. User errors
(:class:`~trackformers.errors.InputError`) print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from trackformers.errors import InputError


def _commands() -> dict[str, ModuleType]:
    import trackformers.commands as pkg

    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")
        names = getattr(module, "NAMES", None) or [module.NAME]
        for name in names:
            found[name] = module
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 ok, 2 bad input, 1 failed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _commands()
    if argv and argv[0] in commands and getattr(commands[argv[0]], "PASSTHROUGH", False):
        return _guarded(lambda: commands[argv[0]].run_passthrough(argv[0], argv[1:]))
    parser = argparse.ArgumentParser(
        prog="trackformers",
        description="Track reconstruction with Transformers: simulate, convert, train, reconstruct, evaluate.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in commands.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        if getattr(module, "PASSTHROUGH", False):
            p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the Lightning CLI")
        else:
            module.add_arguments(p)
    args = parser.parse_args(argv)
    return _guarded(lambda: commands[args.command].run(args))


def _guarded(fn) -> int:  # noqa: ANN001 - a thunk
    try:
        status = fn()
    except InputError as err:
        print(f"trackformers: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trackformers: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
