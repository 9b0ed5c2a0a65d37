"""The two exception types grepq raises on purpose.

`GrepqError` is any user-facing problem (bad flag, missing weights, bad label
file) and its message says what to do. `ImageError` is one image that cannot
be used; its short `reason` token (e.g. ``truncated``) is what a dead-letter
row records, so a night's failures can be counted by kind.
"""

__all__ = ["GrepqError", "ImageError", "WeightsUnavailable"]


class GrepqError(Exception):
    """A problem the user can fix; the message names the flag or file."""


class WeightsUnavailable(GrepqError):
    """Encoder weights could not be fetched or read."""


class ImageError(GrepqError):
    """One image could not be read, decoded or prepared.

    `reason` is a short machine-readable token (``unreadable``, ``empty_file``,
    ``not_an_image``, ``truncated``, ``decompression_bomb``, ...); `detail`
    is the underlying message for humans.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
