"""`grepq evaluate`'s data: feature and baseline rows for every image, computed once and cached.

    read, hash -> cached rows? -> decode -> views -> features (Extractor, batched)
                                         \\-> NIQE, BRISQUE, NSS

The cache holds Parquet shards in the output layout of transforms/store.py:
feature rows under CACHE/views-<digest of the view settings>/features/,
baseline rows under CACHE/baselines/. A row is reused when its path and
content hash match and, for features, when it was made by the models loaded
now (`store.same_models`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time

import numpy as np

from grepq_core.errors import Failure, ImageError
from grepq_core.evaluation.baselines import brisque, niqe, nss_features
from grepq_core.images.decode import decode_image
from grepq_core.images.sources import read_input
from grepq_core.model.cut import image_views
from grepq_core.model.extractor import Extractor
from grepq_core.model.settings import EncoderSpec
from transforms import progress, runs, store
from transforms.sinks import ParquetSink

__all__ = ["NSS_WIDTH", "Cache", "gather"]

log = logging.getLogger(__name__)

NSS_WIDTH = 36
_FLUSH_EVERY = 512  # images between cache shards, so an interrupted run keeps most of its work


def _views_key(spec: EncoderSpec) -> str:
    text = json.dumps(dataclasses.asdict(spec.views), sort_keys=True)
    return "views-" + hashlib.sha256(text.encode()).hexdigest()[:12]


class Cache:
    """Feature and baseline rows of earlier runs, and new ones written as shards."""

    def __init__(self, root: str | None, spec: EncoderSpec, identities: dict):
        self.root = root
        self.features, self.baselines = {}, {}
        if not root:
            return
        self._sinks = {"features": ParquetSink(f"{root.rstrip('/')}/{_views_key(spec)}", store.FEATURES_DIR,
                                               store.features_schema()),
                       "baselines": ParquetSink(root, store.BASELINES_DIR, store.BASELINES)}
        for row in self._sinks["features"].read_table().to_pylist():
            if store.same_models(row, identities):
                self.features[row["path"]] = row
        for row in self._sinks["baselines"].read_table().to_pylist():
            self.baselines[row["path"]] = row

    def get(self, kind: str, path: str, sha256: str) -> dict | None:
        row = getattr(self, kind).get(path)
        return row if row is not None and row["sha256"] == sha256 else None

    def write(self, features: list[dict], baselines: list[dict]) -> None:
        """New rows as one shard per kind, renamed into place once complete."""
        if self.root:
            name = "cache-" + runs.new_run_id().removeprefix("run-")  # one shard per write, no manifest needed
            self._sinks["features"].write_rows(features, name)
            self._sinks["baselines"].write_rows(baselines, name)


def _or_nan(fn, pixels) -> float:
    try:
        return float(fn(pixels))
    except ImageError:
        return math.nan


def _baseline_row(path: str, sha256: str, pixels: np.ndarray) -> dict:
    try:
        nss = nss_features(pixels).tolist()
    except ImageError:
        nss = [math.nan] * NSS_WIDTH
    return {"path": path, "sha256": sha256, "niqe": _or_nan(niqe, pixels),
            "brisque": _or_nan(brisque, pixels), "nss": nss}


def gather(paths: list[str], extractor: Extractor, cache: Cache):
    """(feature rows, baseline rows, dropped) aligned with `paths`; None where an image failed.

    One pass: each image is read and hashed; only what the cache lacks is
    decoded and computed, the features in batches of the spec's batch size.
    Images are decoded on the CPU: the baselines need the pixels there.
    """
    spec = extractor.spec
    features, baselines = [None] * len(paths), [None] * len(paths)
    dropped, batch, new_features, new_baselines = [], [], [], []
    computed, start = 0, time.perf_counter()

    def run_batch():
        rows = extractor.encode([views for _, _, views in batch])
        for (i, sha256, _), row in zip(batch, rows):
            features[i] = {"path": paths[i], "sha256": sha256, **row}
            new_features.append(features[i])
        batch.clear()

    progress.start(len(paths))
    try:
        for i, path in enumerate(paths):
            try:
                data = read_input(path)
                sha256 = hashlib.sha256(data).hexdigest()
                progress.read()
                features[i] = cache.get("features", path, sha256)
                baselines[i] = cache.get("baselines", path, sha256)
                if features[i] is None or baselines[i] is None:
                    pixels = decode_image(data)
                    computed += 1
                if features[i] is None:
                    batch.append((i, sha256, image_views(pixels, spec)))
            except ImageError as e:
                dropped.append(Failure.of(path, e, e.stage).row())
                features[i] = baselines[i] = None
                progress.advance()
                continue
            if baselines[i] is None:
                baselines[i] = _baseline_row(path, sha256, pixels)
                new_baselines.append(baselines[i])
            if len(batch) == spec.batch_size:
                run_batch()
            if max(len(new_features), len(new_baselines)) >= _FLUSH_EVERY and not batch:
                cache.write(new_features, new_baselines)
                new_features, new_baselines = [], []
            progress.advance()
        if batch:
            run_batch()
    finally:
        progress.finish()
    cache.write(new_features, new_baselines)
    elapsed = time.perf_counter() - start
    log.info("%d of %d images computed, %d from the cache, %d dropped; %.1f images/s", computed, len(paths),
             len(paths) - computed - len(dropped), len(dropped), computed / elapsed if computed else math.inf)
    return features, baselines, dropped
