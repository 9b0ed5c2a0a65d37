"""The same JPEG or PNG without its metadata, for a second decode when the metadata broke the first.

Pillow parses ICC profiles, EXIF, XMP and text chunks while it opens a
file, and refuses the whole file when one of them is damaged (a 12-byte ICC
segment, a zTXt chunk that inflates past Pillow's text limit), although the
pixels are fine. `without_metadata` drops exactly those parts and keeps
everything the pixels need: a JPEG's tables, frame and scans, its JFIF
(APP0) and Adobe (APP14, the colour transform) segments; a PNG's critical
chunks and every ancillary chunk that is not metadata (transparency, gamma).
"""

__all__ = ["without_metadata"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"}
# APP1 (EXIF, XMP) to APP13 (Photoshop) and APP15, and comments; not APP0 (JFIF) or APP14 (Adobe).
_JPEG_METADATA = {*range(0xE1, 0xEE), 0xEF, 0xFE}
_JPEG_START_OF_SCAN = 0xDA


def without_metadata(data: bytes) -> bytes | None:
    """`data` with its metadata segments or chunks dropped; None if it is no JPEG or PNG, or holds none."""
    if data.startswith(b"\xff\xd8"):
        stripped = _jpeg_without_metadata(data)
    elif data.startswith(_PNG_SIGNATURE):
        stripped = _png_without_metadata(data)
    else:
        return None
    return stripped if stripped is not None and len(stripped) < len(data) else None


def _jpeg_without_metadata(data: bytes) -> bytes | None:
    """Marker segments up to the first scan, metadata dropped, then the rest as it is."""
    kept, i = [data[:2]], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == _JPEG_START_OF_SCAN:
            return b"".join(kept) + data[i:]
        end = i + 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if marker not in _JPEG_METADATA:
            kept.append(data[i:end])
        i = end
    return None


def _png_without_metadata(data: bytes) -> bytes | None:
    """Every chunk but the metadata ones, up to IEND."""
    kept, i = [_PNG_SIGNATURE], len(_PNG_SIGNATURE)
    while i + 12 <= len(data):
        kind = data[i + 4:i + 8]
        end = i + 12 + int.from_bytes(data[i:i + 4], "big")
        if kind not in _PNG_METADATA:
            kept.append(data[i:end])
        if kind == b"IEND":
            return b"".join(kept)
        i = end
    return None
