"""Dead-letter rows: every image that could not be scored, with where and why.

Built here only, from the core's typed errors (`ImageError` carries its
stage and reason) or from an unexpected exception, so every stage's
failures look alike and can be counted by reason.
"""
from __future__ import annotations

from grepq_core.errors import ImageError

__all__ = ["TAG", "text_path", "dead_letter", "from_error"]

TAG = "dead_letters"  # the tagged output of every DoFn that can dead-letter an image


def text_path(path: str | bytes) -> str:
    """A path as valid UTF-8 text: undecodable bytes in file names become \\xNN escapes."""
    raw = path if isinstance(path, bytes) else path.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace")


def dead_letter(path: str | bytes, stage: str, reason: str, detail: str = "") -> dict:
    """One row of the dead-letter schema."""
    return {"path": text_path(path), "stage": stage, "reason": reason, "detail": detail[:500]}


def from_error(path: str | bytes, error: Exception, stage: str) -> dict:
    """The dead letter for `error`: an `ImageError` names its own stage and reason; anything else is a bug's."""
    if isinstance(error, ImageError):
        return dead_letter(path, error.stage, error.reason, error.detail)
    reason = "unreadable" if stage == "read" else "error"
    return dead_letter(path, stage, reason, f"{type(error).__name__}: {error}")
