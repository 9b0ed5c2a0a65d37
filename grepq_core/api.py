"""Score images from Python in two lines, with the numbers `grepq extract` + `grepq score` give.

    import grepq_core
    model = grepq_core.load(pathways="ll")          # same weight, profile and view options as the CLI
    frame = model.score(["a.jpg", "b.png"])         # one row per image, in order

The frame has every feature-row column the pipeline writes (features,
zero-shot scores, identities, profile), the score columns (`score`,
`calibrated`, `scorer`), and `dead_letter_stage`, `dead_letter_reason` and
`dead_letter_detail`, set for images that could not be scored (their other
columns are empty). It runs in this process, on `device` ("auto": CUDA when
present), without Beam.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from grepq_core.devices import decodes_on_device
from grepq_core.errors import GrepqError, ImageError
from grepq_core.extractor import Extractor, ViewConfig
from grepq_core.inputs import prepare, read_and_hash
from grepq_core.pathways import parse_pathways
from grepq_core.profiles import PROFILES, spec_for
from grepq_core.scoring import RowScorer

__all__ = ["load", "Model"]

_VIEW_FIELDS = {f.name for f in dataclasses.fields(ViewConfig)}


def load(pathways: str = "ll,hl", profile: str = "fast", model: str | None = None,
         scale: tuple[float, float] | None = None, **settings) -> "Model":
    """Load the encoders (and a fitted ridge `model`, else zero-shot scores) once, to score many images.

    `settings` are the CLI's encoder and view options by field name:
    ll_weights, pristine, hl_model, hl_weights, hl_visual_weights, device,
    decode, batch_size, and (fast profile) ll_view, hl_size, max_patches,
    zero_shot. Weights that cannot be loaded raise here, before any image.
    """
    views = {k: settings.pop(k) for k in list(settings) if k in _VIEW_FIELDS}
    if profile == "reference" and set(views) - {"zero_shot"}:
        raise GrepqError(f"`profile` reference fixes the views: leave out {', '.join(sorted(views))}")
    base = PROFILES[profile].get("views", ViewConfig()) if profile in PROFILES else ViewConfig()
    spec = spec_for(profile, pathways=parse_pathways(pathways), **settings)
    spec = dataclasses.replace(spec, views=dataclasses.replace(base, **views))
    return Model(Extractor.load(spec), RowScorer(model, scale))


class Model:
    """Loaded encoders and a scoring rule; `score` takes paths or URLs."""

    def __init__(self, extractor: Extractor, scorer: RowScorer):
        self.extractor = extractor
        self.scorer = scorer
        self._device_decode = decodes_on_device(extractor.spec.decode)

    def score(self, paths) -> pd.DataFrame:
        """One row per path, in order: features and scores, or the dead-letter stage and reason."""
        paths = [str(p) if not isinstance(p, (str, bytes)) else p for p in paths]
        rows = []
        size = self.extractor.spec.batch_size
        for start in range(0, len(paths), size):
            rows += self._batch(paths[start:start + size])
        columns = list(dict.fromkeys(c for r in rows for c in r))
        return pd.DataFrame(rows, columns=columns)

    def _batch(self, paths: list) -> list[dict]:
        results, hashes = [], []
        for path in paths:
            try:
                data, sha256 = read_and_hash(path)
                hashes.append(sha256)
                results.append(prepare(data, self.extractor.spec, self._device_decode))
            except ImageError as e:
                hashes.append(None)
                results.append(e)
        results = [r if isinstance(r, ImageError) else {**r, **self.scorer({**r, "path": p})}
                   for p, r in zip(paths, self.extractor.run(results))]
        out = []
        for path, sha256, result in zip(paths, hashes, results):
            head = {"path": path if isinstance(path, str) else path.decode("utf-8", "backslashreplace"),
                    "sha256": sha256}
            if isinstance(result, ImageError):
                out.append({**head, "dead_letter_stage": result.stage, "dead_letter_reason": result.reason,
                            "dead_letter_detail": result.detail})
            else:
                out.append({**head, **result, "dead_letter_stage": None, "dead_letter_reason": None,
                            "dead_letter_detail": None})
        return out
