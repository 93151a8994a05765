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
    """The informative part of a ``torch.load`` error (e.g. 'Unsupported global: GLOBAL print was not an allowed
    global by default'), else its first line that is not boilerplate, else its type."""
    text = str(err)
    marker = "WeightsUnpickler error:"  # torch >= 2.6 puts the reason after this, amid numbered advice
    if marker in text:
        reason = text.split(marker, 1)[1].strip().split(". ")[0].strip().removesuffix(".")
        if reason:
            return reason
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(_BOILERPLATE) and not ln.startswith(("(1)", "(2)"))]
    return (useful or [type(err).__name__])[0].removesuffix(".")


def load_error(subject: str, err: BaseException, expected: str) -> InputError:
    """The one-sentence InputError for a failed ``torch.load(weights_only=True)`` of ``subject``.

    ``subject`` names the file (``"checkpoint model.ckpt"``), ``expected`` what it should hold. A pickle naming a
    function or class outside torch's allow list was refused on purpose: the message quotes torch's reason (e.g.
    'unsupported GLOBAL posix.system'). Anything else (random bytes, a truncated archive, a text file, a zip of
    something else) is a file torch cannot read at all: torch's own wording there is long and internal, so the
    message says what the user can act on instead.
    """
    # permissions, a folder, a vanished file: not the content (a truncated archive raises a plain OSError, EINVAL)
    if isinstance(err, PermissionError | IsADirectoryError | FileNotFoundError):
        return InputError(f"{subject}: cannot be read ({err.strerror or type(err).__name__}); expected {expected}.")
    if "unsupported global" in str(err).lower():
        return InputError(f"{subject}: refused to load it with weights_only=True ({load_error_reason(err)}); "
                          f"expected {expected}.")
    return InputError(f"{subject}: not a readable checkpoint (the file is corrupt, truncated or of another format); "
                      f"expected {expected}.")
