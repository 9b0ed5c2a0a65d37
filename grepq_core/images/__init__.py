"""Bytes to pixels: where an image lives, reading it with a cap, decoding it to 8-bit RGB.

- keys.py: one key per image, whether a loose file, a member of a tar shard or a row of a Parquet file;
- read.py: `read_bytes` / `read_and_hash` of a local path or any fsspec URL (regular files only, a byte cap);
- shards.py, parquet.py: the images of WebDataset tar shards (streamed) and Parquet files (by row group);
- sources.py: every image of any input, and the bytes of any key;
- lists.py: list files of inputs (text, CSV, Parquet, Cloud Storage inventory reports);
- limits.py: `DecodeLimits`, what one image may cost (pixels, memory, seconds);
- decode.py: `decode_image` (upright, RGB, 8 bits; every conversion listed; priced against the memory budget
  before pixels are allocated) and `device_decodable`;
- metadata.py: a JPEG or PNG without its metadata, for a second try when damaged metadata broke the first;
- deadline.py: `decode_in_time`, the decode in a worker process that is stopped at the time budget;
- paths.py: file names as reversible escaped text (`to_text`, `to_local`).

No torch here: a process that only reads and decodes images stays light.
"""
