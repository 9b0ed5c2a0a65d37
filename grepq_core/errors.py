"""The two exception types grepq raises on purpose.

`GrepqError` is any user-facing problem (bad flag, missing weights, bad label
file) and its message says what to do. `ImageError` is one image that cannot
be used; its short `reason` token (e.g. ``truncated``) is what a dead-letter
row records, so a night's failures can be counted by kind.
"""

import difflib

__all__ = ["GrepqError", "ImageError", "WeightsUnavailable", "did_you_mean"]


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


def did_you_mean(name: str, choices, n: int = 3) -> str:
    """' Did you mean a, b?' for the choices closest to `name`, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=n)
    return f" Did you mean {', '.join(close)}?" if close else ""
