"""Images stored in Parquet files: one image column, read one row group at a time.

img2dataset (``--output_format parquet``) writes the image bytes in a binary
column (``jpg``); Hugging Face datasets write an ``image`` struct of
``{bytes, path}``. `image_column` finds that column (or checks the one a
run names), and refuses a file that holds none: img2dataset writes
metadata-only ``.parquet`` files beside its ``.tar`` shards, which must not
be read as images. A multi-GB file never sits whole in memory: `images`
reads one row group of the one column at a time.
"""
from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from grepq_core.errors import GrepqError, ImageError
from grepq_core.files import writing
from grepq_core.images.keys import row_key
from grepq_core.images.paths import to_text
from grepq_core.images.read import DEFAULT_MAX_BYTES, open_input

__all__ = ["image_column", "row_groups", "images", "write_rows"]


def _is_image_type(kind: pa.DataType) -> bool:
    """A binary column, or a struct with a binary `bytes` field (Hugging Face's Image feature)."""
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return True
    return pa.types.is_struct(kind) and any(
        kind.field(i).name == "bytes" and (pa.types.is_binary(kind.field(i).type)
                                           or pa.types.is_large_binary(kind.field(i).type))
        for i in range(kind.num_fields))


def image_column(schema: pa.Schema, uri: str, requested: str | None = None) -> str:
    """The column of `schema` that holds the images: `requested`, else the one obvious candidate."""
    candidates = [f.name for f in schema if _is_image_type(f.type)]
    if requested is not None:
        if requested not in schema.names:
            raise GrepqError(f"{uri} has no column {requested!r} (`image_column`); it has {', '.join(schema.names)}")
        if requested not in candidates:
            raise GrepqError(f"{uri}: column {requested!r} (`image_column`) holds {schema.field(requested).type}, "
                             "not image bytes (binary, or a struct with a binary `bytes` field)")
        return requested
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise GrepqError(f"{uri} holds no image column (a binary column, or a struct with a binary `bytes` field "
                         "as Hugging Face writes): img2dataset writes such metadata-only .parquet files beside its "
                         ".tar shards, so give the shards as `input`, or name the column with `image_column`; its "
                         f"columns are {', '.join(schema.names)}")
    raise GrepqError(f"{uri} has several columns of image bytes ({', '.join(candidates)}): name one with "
                     "`image_column`")


def row_groups(uri: str | bytes, requested: str | None = None) -> tuple[str, list[int]]:
    """(the image column, the number of rows of each row group) of a Parquet file, from its footer;
    `ImageError` ``no_image_column`` for a file without one (or with several, and none requested)."""
    with open_input(uri) as (f, _):
        try:
            meta = pq.ParquetFile(f).metadata
        except (pa.ArrowException, OSError) as e:
            raise ImageError("not_parquet", f"{to_text(uri)}: {e}", stage="read") from e
    try:
        column = image_column(meta.schema.to_arrow_schema(), to_text(uri), requested)
    except GrepqError as e:
        raise ImageError("no_image_column", str(e), stage="read") from None
    return column, [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def images(uri: str | bytes, column: str, group: int, first_row: int,
           max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[tuple[str, bytes | ImageError]]:
    """(key, bytes or the `ImageError` why not) of each row of one row group; `first_row` is its first row's number."""
    file = to_text(uri)
    try:
        cells, paths = _group_cells(uri, column, group)
    except ImageError as e:
        yield file, e
        return
    for i in range(len(cells)):  # one cell at a time: a row group's column is not copied whole into Python
        yield row_key(file, column, first_row + i), _cell(cells, paths, i, max_bytes)


def image(uri: str | bytes, column: str, group: int, index: int,
          max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | ImageError:
    """The bytes (or the `ImageError` why not) of row `index` of one row group, converting no other cell."""
    try:
        cells, paths = _group_cells(uri, column, group)
    except ImageError as e:
        return e
    return _cell(cells, paths, index, max_bytes)


def _group_cells(uri: str | bytes, column: str, group: int) -> tuple[pa.Array, pa.Array | None]:
    """One row group's image bytes, and the paths a Hugging Face ``{bytes, path}`` struct carries."""
    try:
        with open_input(uri) as (f, _):
            cells = pq.ParquetFile(f).read_row_group(group, columns=[column]).column(0).combine_chunks()
    except (pa.ArrowException, OSError) as e:
        raise ImageError("unreadable", f"{to_text(uri)}, row group {group}: {e}", stage="read") from e
    if pa.types.is_struct(cells.type):
        paths = cells.field("path") if cells.type.get_field_index("path") >= 0 else None
        return cells.field("bytes"), paths
    return cells, None


def _cell(cells: pa.Array, paths: pa.Array | None, i: int, max_bytes: int) -> bytes | ImageError:
    return _checked(cells[i].as_py(), None if paths is None else paths[i].as_py(), max_bytes)


def _checked(data: bytes | None, path: str | None, max_bytes: int) -> bytes | ImageError:
    if data is None:
        named = f" (its path: {path})" if path else ""
        return ImageError("empty_file", f"the image cell holds no bytes{named}", stage="read")
    if not data:
        return ImageError("empty_file", "the image cell holds 0 bytes", stage="read")
    if len(data) > max_bytes:
        return ImageError("too_large", f"{len(data)} bytes, more than the {max_bytes} allowed", stage="read")
    return data


def write_rows(source: str | bytes, rows: dict[int, dict], dest: str, extra: pa.Schema) -> int:
    """Write the rows `rows` names (row number -> values of the `extra` columns) of the Parquet file
    `source` to `dest`: every original column as it is, then the extra ones; whole or not at all. Returns
    the rows.

    Read one row group at a time, so a multi-GB source never sits whole in memory. The extra columns
    keep their types in every row group and file, even where a group's values are all null.
    """
    wanted = sorted(rows)
    written, first, writer = 0, 0, None
    with open_input(source) as (f, _), writing(dest) as out:
        table_file = pq.ParquetFile(f)
        for group in range(table_file.num_row_groups):
            count = table_file.metadata.row_group(group).num_rows
            take = [r - first for r in wanted if first <= r < first + count]
            first += count
            if not take:
                continue
            table = table_file.read_row_group(group).take(take)
            for field in extra:
                table = table.append_column(field, pa.array([rows[first - count + i][field.name] for i in take],
                                                            field.type))
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
            written += len(take)
        if writer is None:  # no row of the source is wanted: an empty file with the source's columns
            writer = pq.ParquetWriter(out, pa.unify_schemas([table_file.schema_arrow, extra]))
        writer.close()
    return written
