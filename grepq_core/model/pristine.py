"""The pristine model of the zero-shot LL score, as scoring loads it (docs/method.md, "Zero-shot").

The LL features of pristine patches (chosen by grepq_core/training/
pristine_patches.py when the model is built) give the mean and covariance
of a multivariate Gaussian, as in NIQE; `zero_shot.py` measures how far a
test image's patch statistics lie from it.

The model is stored as a plain `.npz` (no pickled objects) and read back with
``allow_pickle=False``. The selected patches themselves can also be stored
as the reference does: an HDF5 file with one float32 dataset ``data`` of
shape (N, 3, 96, 96) in [0, 1] (`write_patches`, `read_patches`); a pristine
model is then fitted on them with whichever LL encoder is in use
(`load_pristine`, cached by content).
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import numpy as np
import torch

from grepq_core.errors import GrepqError, WeightsUnavailable
from grepq_core.files import write_file
from grepq_core.model.anchors import Anchors
from grepq_core.model.npz import read_tagged_npz
from grepq_core.model.zero_shot import patch_statistics

__all__ = ["PristineModel", "fit_pristine", "patch_features", "read_patches", "write_patches", "load_pristine",
           "HDF5_SUFFIXES"]

HDF5_SUFFIXES = (".hdf5", ".h5")

_FORMAT = "grepq-pristine/1"


@dataclass
class PristineModel:
    """Mean and covariance of LL features of pristine patches.

    `encoder_identity` names the LL encoder whose features these are: a
    pristine model is only meaningful with that encoder. `calibration` maps
    a patch setting (`calibration.setting_key`) to the anchors of the
    0-100 scale measured with it.
    """

    mean: np.ndarray
    cov: np.ndarray
    encoder_identity: str
    n_patches: int
    calibration: dict[str, Anchors] = field(default_factory=dict)

    def save(self, uri: str) -> None:
        """Write a plain `.npz` (no pickled objects) to a path or fsspec URL."""
        buffer = io.BytesIO()
        keys = sorted(self.calibration)
        np.savez(buffer, format=np.array(_FORMAT), mean=self.mean, cov=self.cov,
                 encoder_identity=np.array(self.encoder_identity), n_patches=np.array(self.n_patches),
                 calibration_keys=np.array(keys, dtype=str),
                 calibration_anchors=np.array([[self.calibration[k].good, self.calibration[k].bad] for k in keys],
                                              dtype=np.float64).reshape(-1, 2))
        write_file(uri, buffer.getvalue())

    @classmethod
    def load(cls, uri: str) -> "PristineModel":
        """Read a model written by `save`; anything else is a `GrepqError`."""
        try:
            with fsspec.open(uri, "rb") as f:
                data = f.read()
        except OSError as e:
            raise GrepqError(f"cannot read pristine model {uri}: {e}") from e
        fields = read_tagged_npz(data, uri, _FORMAT, ("mean", "cov", "encoder_identity", "n_patches"),
                                 "grepq pristine model", optional=("calibration_keys", "calibration_anchors"))
        mean, cov = fields["mean"].astype(np.float64), fields["cov"].astype(np.float64)
        if mean.ndim != 1 or cov.shape != (mean.size, mean.size):
            raise GrepqError(f"{uri}: mean {mean.shape} and covariance {cov.shape} do not match")
        keys = [str(k) for k in fields.get("calibration_keys", [])]
        anchors = np.asarray(fields.get("calibration_anchors", np.empty((0, 2))), dtype=np.float64).reshape(-1, 2)
        if len(keys) != len(anchors):
            raise GrepqError(f"{uri}: {len(keys)} calibration settings but {len(anchors)} pairs of anchors")
        calibration = {k: Anchors(float(good), float(bad)) for k, (good, bad) in zip(keys, anchors)}
        return cls(mean, cov, str(fields["encoder_identity"]), int(fields["n_patches"]), calibration)


def fit_pristine(features: np.ndarray, encoder_identity: str) -> PristineModel:
    """Fit the Gaussian to [N, D] LL features of pristine patches (N >= 2)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise GrepqError(f"a pristine model needs at least 2 patch feature rows, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise GrepqError("pristine patch features contain NaN or infinity")
    mean, cov = patch_statistics(features)
    return PristineModel(mean, cov, encoder_identity, len(features))


@torch.inference_mode()
def patch_features(encoder, patches: np.ndarray, device: torch.device | str = "cpu", batch: int = 256) -> np.ndarray:
    """LL features [N, D] of [N, S, S, 3] uint8 patches, normalised as the encoder's weights expect."""
    encoder = encoder.to(device).eval()
    chunks = torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).split(batch)
    return np.concatenate([encoder(encoder.normalization(c.to(device))).float().cpu().numpy() for c in chunks])


def write_patches(patches: np.ndarray, uri: str) -> None:
    """Store [N, S, S, 3] uint8 patches as the reference does: HDF5 `data`, float32 (N, 3, S, S) in [0, 1]."""
    import h5py

    data = np.ascontiguousarray(patches.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("data", data=data)
    write_file(uri, buffer.getvalue())


def read_patches(uri: str) -> tuple[np.ndarray, str]:
    """([N, S, S, 3] uint8 patches, sha256 of the file) from a reference-format HDF5 file.

    Values in [0, 1] are mapped back to 0..255 by rounding, which is exact
    for patches that came from 8-bit images.
    """
    import h5py

    try:
        with fsspec.open(uri, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise WeightsUnavailable(f"cannot read pristine patches {uri}: {e}") from e
    try:
        with h5py.File(io.BytesIO(raw), "r") as f:
            data = f["data"][...]
    except (OSError, KeyError) as e:
        raise WeightsUnavailable(f"{uri} is not an HDF5 file with a `data` dataset of pristine patches: {e}") from e
    if data.ndim != 4 or data.shape[1] != 3 or data.shape[2] != data.shape[3] or len(data) < 2:
        raise WeightsUnavailable(f"{uri}: `data` must be (N >= 2, 3, S, S) patches, got {data.shape}")
    if not np.isfinite(data).all() or data.min() < 0 or data.max() > 1:
        raise WeightsUnavailable(f"{uri}: pristine patch values must lie in [0, 1]")
    patches = np.rint(data.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)
    return patches, hashlib.sha256(raw).hexdigest()


def _cache_dir() -> Path:
    return Path(os.environ.get("GREPQ_CACHE", Path.home() / ".cache" / "grepq")) / "pristine"


def load_pristine(uri: str, encoder, encoder_identity: str) -> PristineModel:
    """A pristine model from a `.npz` (as `save` writes), or fitted on an HDF5 file's patches with `encoder`.

    The model fitted from patches is cached under $GREPQ_CACHE (default
    ~/.cache/grepq) by the file's content and the encoder's identity, so a
    nightly run fits it once.
    """
    if not uri.lower().endswith(HDF5_SUFFIXES):
        return PristineModel.load(uri)
    patches, digest = read_patches(uri)
    cached = _cache_dir() / f"{digest[:16]}-{encoder_identity.replace(':', '_').replace('@', '_')}.npz"
    if cached.exists():
        return PristineModel.load(str(cached))
    model = fit_pristine(patch_features(encoder, patches), encoder_identity)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    model.save(str(tmp))
    tmp.replace(cached)
    return model
