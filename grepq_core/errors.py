"""The exception types grepq raises on purpose, and the one shape of an input that ended without a score.

`GrepqError` is any user-facing problem (bad flag, missing weights, bad label
file) and its message says what to do. `ImageError` is one image that cannot
be used; its short `reason` token (e.g. ``truncated``) is what a dead-letter
row records, so a night's failures can be counted by kind. `Failure` is
that record: the Beam pipelines' dead letters, the Python API's columns
and `grepq evaluate`'s list of left-out images are all made of it.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass

__all__ = ["GrepqError", "ImageError", "WeightsUnavailable", "Failure", "did_you_mean", "found_in"]


class GrepqError(Exception):
    """A problem the user can fix; the message names the flag or file."""


class WeightsUnavailable(GrepqError):
    """Encoder weights could not be fetched or read."""


class ImageError(GrepqError):
    """One image could not be read, decoded or prepared.

    `reason` is a short machine-readable token (``unreadable``, ``empty_file``,
    ``not_an_image``, ``truncated``, ``decompression_bomb``, ...); `detail`
    is the underlying message for humans; `stage` says where it happened
    (``read``, ``decode``, ``prepare``).
    """

    def __init__(self, reason: str, detail: str = "", stage: str = "decode"):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.stage = stage


def found_in(error: BaseException | None, kind: type) -> BaseException | None:
    """The first exception of type `kind` in `error`'s chain of causes and contexts (Beam re-raises a
    worker's exception wrapped in its own), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def did_you_mean(name: str, choices, n: int = 3) -> str:
    """' Did you mean a, b?' for the choices closest to `name`, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=n)
    return f" Did you mean {', '.join(close)}?" if close else ""


@dataclass(frozen=True)
class Failure:
    """One input that ended without a score: which, how far it got, why, and its content hash if read.

    `path` is the input's key as outputs write it (escaped text,
    grepq_core/images/paths.py). `detail` is for humans, at most
    `MAX_DETAIL` characters.
    """

    path: str
    stage: str
    reason: str
    detail: str = ""
    sha256: str | None = None

    FIELDS = ("path", "sha256", "stage", "reason", "detail")  # the order of a dead-letter row's columns
    WHY = ("stage", "reason", "detail")
    MAX_DETAIL = 500

    def __post_init__(self):
        object.__setattr__(self, "detail", self.detail[:self.MAX_DETAIL])

    @classmethod
    def of(cls, path: str, error: Exception, stage: str, sha256: str | None = None) -> Failure:
        """The failure `error` means: an `ImageError` names its own stage and reason; anything else is a
        bug's (reason ``error``), or at stage ``read`` an unreadable file's."""
        if isinstance(error, ImageError):
            return cls(path, error.stage, error.reason, error.detail, sha256)
        return cls(path, stage, "unreadable" if stage == "read" else "error", f"{type(error).__name__}: {error}",
                   sha256)

    def row(self) -> dict:
        """The dead-letter row: `FIELDS`, in order."""
        record = asdict(self)
        return {name: record[name] for name in self.FIELDS}
