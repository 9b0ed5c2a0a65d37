"""Bytes to pixels: reading an image with a cap, decoding it to 8-bit RGB, file names as escaped text.

- read.py: `read_bytes` / `read_and_hash` from a local path or any fsspec URL (regular files only, a byte cap);
- decode.py: `decode_image` (upright, RGB, 8 bits; every conversion listed) and `is_plain_jpeg`;
- paths.py: file names as reversible escaped text (`to_text`, `to_local`).

No torch here: a process that only reads and decodes images stays light.
"""
