"""The one error type for bad user input.

Every reader, validator and command raises :class:`InputError` with a single sentence that names the
file (or event), the table or column, the offending value and what was expected. The CLI prints that
sentence and exits non-zero without a traceback; anything else that escapes is a bug of ours.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (file, column, value or option); the message is one complete sentence."""


#: torch's boilerplate around a weights_only refusal (it even suggests weights_only=False): not the reason.
_BOILERPLATE = ("Weights only load failed", "Check the documentation", "Please file an issue",
                "This file can still be loaded")


def load_error_reason(err: BaseException) -> str:
    """The informative line of a ``torch.load`` error (e.g. 'unsupported GLOBAL posix.system'), else its type."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(_BOILERPLATE)]
    return (useful or [type(err).__name__])[0].removesuffix(".")
