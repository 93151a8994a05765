"""The one error type for bad user input.

Every reader, validator and command raises :class:`InputError` with a single sentence that names the
file (or event), the table or column, the offending value and what was expected. The CLI prints that
sentence and exits non-zero without a traceback; anything else that escapes is a bug of ours.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (file, column, value or option); the message is one complete sentence."""
