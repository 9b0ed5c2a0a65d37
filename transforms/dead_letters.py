"""Dead-letter rows: every image that could not be scored, with where and why.

Built here only, from the core's typed errors (`ImageError` carries its
stage and reason) or from an unexpected exception, so every stage's
failures look alike and can be counted by reason.
"""
from __future__ import annotations

from grepq_core.errors import ImageError
from grepq_core.paths import to_text

__all__ = ["TAG", "dead_letter", "from_error"]

TAG = "dead_letters"  # the tagged output of every DoFn that can dead-letter an image


def dead_letter(path: str | bytes, stage: str, reason: str, detail: str = "", sha256: str | None = None) -> dict:
    """One row of the dead-letter schema; `sha256` when the file could be read."""
    return {"path": to_text(path), "sha256": sha256, "stage": stage, "reason": reason, "detail": detail[:500]}


def from_error(path: str | bytes, error: Exception, stage: str, sha256: str | None = None) -> dict:
    """The dead letter for `error`: an `ImageError` names its own stage and reason; anything else is a bug's."""
    if isinstance(error, ImageError):
        return dead_letter(path, error.stage, error.reason, error.detail, sha256)
    reason = "unreadable" if stage == "read" else "error"
    return dead_letter(path, stage, reason, f"{type(error).__name__}: {error}", sha256)
