"""Score images from Python in two lines, with the numbers `grepq extract` + `grepq score` give.

    import grepq_core
    model = grepq_core.load(pathways="ll")          # same weight, profile and view options as the CLI
    frame = model.score(["a.jpg", "b.png"])         # one row per image, in order (shards: one per member)

The frame has every feature-row column the pipeline writes (features,
zero-shot scores, identities, profile), the score columns (`score`,
`calibrated`, `scorer`), and `dead_letter_stage`, `dead_letter_reason` and
`dead_letter_detail` (a `grepq_core.errors.Failure`), set for images that
could not be scored (their other columns are empty). It runs in this
process, on `device` ("auto": CUDA when present), without Beam.
"""
from __future__ import annotations

import hashlib
import itertools
import os

import pandas as pd

from grepq_core.errors import Failure, ImageError
from grepq_core.fitting.scoring import RowScorer
from grepq_core.images import sources
from grepq_core.images.paths import absolute
from grepq_core.model.cut import prepare
from grepq_core.model.devices import decodes_on_device
from grepq_core.model.extractor import Extractor
from grepq_core.model.profiles import spec_for

__all__ = ["load", "Model"]

_FAILURE_COLUMNS = tuple(f"dead_letter_{name}" for name in Failure.WHY)


def load(pathways: str = "ll,hl", profile: str = "fast", model: str | None = None,
         scale: tuple[float, float] | None = None, image_column: str | None = None, **settings) -> "Model":
    """Load the encoders (and a fitted ridge `model`, else zero-shot scores) once, to score many images.

    `settings` are the CLI's encoder and view options by name: device,
    decode, batch_size, the views (ll_view, hl_size, max_patches, zero_shot,
    ...; the reference profile fixes most) and every registered pathway's
    settings (ll_weights, pristine, hl_model, hl_weights, hl_visual_weights,
    ...). `image_column` names the image column of Parquet inputs (default:
    the obvious one). Weights that cannot be loaded raise here, before any
    image.
    """
    spec = spec_for(profile, pathways, **settings)
    return Model(Extractor.load(spec), RowScorer(model, scale), image_column)


class Model:
    """Loaded encoders and a scoring rule; `score` takes paths, URIs, keys, shards and Parquet files."""

    def __init__(self, extractor: Extractor, scorer: RowScorer, image_column: str | None = None):
        self.extractor = extractor
        self.scorer = scorer
        self.image_column = image_column
        self._device_decode = decodes_on_device(extractor.spec.decode)

    def score(self, inputs) -> pd.DataFrame:
        """One row per image, in order: features and scores, or the dead-letter stage and reason.

        An input is an image's path, URI or key (grepq_core/images/keys.py),
        a WebDataset tar shard or a Parquet file with an image column: a
        shard or a Parquet file gives one row per image it holds. A local
        path is made absolute first, so the keys are those `grepq extract`
        gives.
        """
        items = (item for uri in inputs for item in sources.images(
            absolute(str(uri)) if isinstance(uri, (str, os.PathLike)) else uri, self.image_column))
        rows = []
        while batch := list(itertools.islice(items, self.extractor.spec.batch_size)):
            rows += self._batch(batch)
        columns = list(dict.fromkeys(c for r in rows for c in r))
        return pd.DataFrame(rows, columns=columns)

    def _batch(self, items: list[tuple[str, bytes | ImageError]]) -> list[dict]:
        results, hashes = [], []
        for _, data in items:
            if isinstance(data, ImageError):
                hashes.append(None)
                results.append(data)
                continue
            hashes.append(hashlib.sha256(data).hexdigest())
            try:
                results.append(prepare(data, self.extractor.spec, self._device_decode))
            except ImageError as e:
                results.append(e)
        out = []
        for (key, _), sha256, result in zip(items, hashes, self.extractor.run(results)):
            if isinstance(result, ImageError):
                failure = Failure.of(key, result, result.stage, sha256).row()
                out.append({"path": key, "sha256": sha256, **{c: failure[n] for c, n in zip(_FAILURE_COLUMNS,
                                                                                             Failure.WHY)}})
            else:
                out.append({"path": key, "sha256": sha256, **result, **self.scorer({**result, "path": key}),
                            **dict.fromkeys(_FAILURE_COLUMNS)})
        return out
