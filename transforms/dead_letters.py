"""Dead-letter rows: every image that could not be scored, with where and why.

Each is a `grepq_core.errors.Failure` (the one shape of a failure record),
made from the core's typed errors or from an unexpected exception, so every
stage's failures look alike and can be counted by reason.
"""
from __future__ import annotations

from grepq_core.errors import Failure
from grepq_core.images.paths import to_text

__all__ = ["TAG", "dead_letter", "from_error"]

TAG = "dead_letters"  # the tagged output of every DoFn that can dead-letter an image


def dead_letter(path: str | bytes, stage: str, reason: str, detail: str = "", sha256: str | None = None,
                source: str | None = None, stamp: str | None = None) -> dict:
    """One row of the dead-letter schema; `sha256` when the file could be read; the input it came from."""
    return {**Failure(to_text(path), stage, reason, detail, sha256).row(), "source": source, "source_stamp": stamp}


def from_error(path: str | bytes, error: Exception, stage: str, sha256: str | None = None,
               source: str | None = None, stamp: str | None = None) -> dict:
    """The dead letter for `error`: an `ImageError` names its own stage and reason; anything else is a bug's."""
    return {**Failure.of(to_text(path), error, stage, sha256).row(), "source": source, "source_stamp": stamp}
