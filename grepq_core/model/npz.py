"""Tagged `.npz` files: plain arrays with a `format` tag, never pickled objects.

The pristine model and the training records are stored this way; reading
one refuses pickles and foreign files with a `GrepqError` naming the file.
"""
import io

import numpy as np

from grepq_core.errors import GrepqError

__all__ = ["read_tagged_npz"]


def read_tagged_npz(data: bytes, uri: str, expected_format: str, keys: tuple[str, ...], what: str,
                    optional: tuple[str, ...] = ()) -> dict:
    """The arrays `keys` (and those of `optional` that it has) of an `.npz` whose `format` is `expected_format`."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            fields = {k: npz[k] for k in ("format", *keys)}
            fields.update({k: npz[k] for k in optional if k in npz.files})
    except (ValueError, KeyError, OSError) as e:
        raise GrepqError(f"{uri} is not a {what} (.npz without pickled objects): {e}") from e
    if str(fields["format"]) != expected_format:
        raise GrepqError(f"{uri} has format {fields['format']}, expected {expected_format}")
    return fields
