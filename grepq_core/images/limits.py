"""What one image may cost to decode, as plain values that travel to worker processes.

Light on purpose (no Pillow, no numpy): the settings and the CLI's --help
import it.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_MEMORY", "DEFAULT_MAX_SECONDS", "DecodeLimits"]

# Twice what the largest common camera JPEG (61 MP, baseline) takes with its views, far below a worker's memory.
DEFAULT_MAX_MEMORY = 2**30
# Decoding a 24 MP photo takes well under a second; a file that takes this long is stuck or hostile.
DEFAULT_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class DecodeLimits:
    """What decoding one image may cost; checked on its declared size, before pixels are allocated.

    `max_pixels` lowers the decompression-bomb limit below Pillow's
    ``MAX_IMAGE_PIXELS`` (None: Pillow's). `max_memory` caps
    `grepq_core.images.decode.memory_needed` (None: no cap), counting
    `later_bytes_per_pixel` for what the caller allocates per pixel
    afterwards (views). `max_seconds` is the time budget
    grepq_core/images/deadline.py enforces (None: none); a decode in the
    caller's own process cannot stop itself.
    """

    max_pixels: int | None = None
    max_memory: int | None = DEFAULT_MAX_MEMORY
    later_bytes_per_pixel: int = 0
    max_seconds: float | None = None
