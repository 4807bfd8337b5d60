"""How lrstudy reports a problem: one line naming it and its cause.

Bad input is refused in one line on stderr (exit status 2) before anything trains; the reason
part of such a line is often another exception, written by :func:`one_line`. Errors of a
kind that crosses the layers are defined here: :class:`DataError`.
"""

from __future__ import annotations


class DataError(ValueError):
    """The data cannot be had: a file is missing, corrupted or not downloadable, or a user's
    source cannot be read. The message is one line naming the file or dataset and the fix."""


def one_line(exc: BaseException, *, with_type: bool = True, limit: int | None = None) -> str:
    """``exc`` on one line: ``"Type: message"`` (or the message alone), whitespace runs
    joined, cut at ``limit`` characters; the type's name when there is no message."""
    text = " ".join(str(exc).split())
    if with_type:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    text = text or type(exc).__name__
    return text[:limit] if limit else text
