"""CLI subcommands, one module each (discovered by :mod:`trackformers.cli`)."""
