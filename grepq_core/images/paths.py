"""File names as text in outputs, escaped so that every name has exactly one spelling and can be read back.

A row's ``path`` is the file's name as given by the filesystem, with four
kinds of character written as backslash escapes: the backslash itself
(``\\\\``), control characters (``\\n``, ``\\r``, ``\\t``, else ``\\xNN``), the
characters Python's ``str.splitlines`` also breaks lines at (U+0080 to
U+009F, U+2028, U+2029: ``\\uNNNN``), and bytes that are not UTF-8
(``\\xNN``). So a name holding a line break of any kind stays on one line of
keep.txt and one CSV row, a raw byte 0xff and the four characters ``\\xff``
get different paths, and `to_local` gives back the exact name.
"""
from __future__ import annotations

import os
import re

__all__ = ["to_text", "to_local", "absolute"]

_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPE = re.compile(r"\\(\\|n|r|t|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")
_NEEDS_ESCAPE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff]")


def _escape_char(match: re.Match) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as surrogateescape holds it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def to_text(path: str | bytes) -> str:
    """The escaped text form of a file name (str from the OS, or raw bytes)."""
    text = os.fsdecode(path) if isinstance(path, bytes) else path
    return _NEEDS_ESCAPE.sub(_escape_char, text)


def to_local(text: str) -> str | bytes:
    """The file name `to_text` was given: str, or bytes when it held bytes that are not UTF-8."""
    out, raw = bytearray(), False
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += text[pos:m.start()].encode("utf-8", "surrogatepass")
        code = m.group(1)
        if code.startswith("u"):
            out += chr(int(code[1:], 16)).encode("utf-8")
        elif code.startswith("x"):
            value = int(code[1:], 16)
            raw |= value >= 0x80
            out.append(value)
        else:
            out += {"\\": b"\\", "n": b"\n", "r": b"\r", "t": b"\t"}[code]
        pos = m.end()
    out += text[pos:].encode("utf-8", "surrogatepass")
    data = bytes(out)
    if raw:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data
    return data.decode("utf-8")


def absolute(entry: str) -> str:
    """A local path made absolute, as keys name files (a URI or key, with its ``://``, as it is)."""
    return entry if "://" in entry else os.path.abspath(entry)
