"""The FSIM "annotator" matrix between the K versions of one photo.

METHOD.md, "Training the LL encoder": the similarity matrix A (K x K) that
weights the quality-aware contrastive loss is FSIM (Zhang et al., "FSIM: A
Feature Similarity Index for Image Quality Assessment", TIP 2011) between
each pair of versions, with ones on the diagonal. FSIM is computed by
``piq.fsim`` in its colour form (FSIMc), which needs no weights or downloads.

FSIM is symmetric in its two arguments by definition, so each unordered pair
is computed once and mirrored; the diagonal is set to exactly 1 rather than
computed.
"""
from __future__ import annotations

import numpy as np
import piq
import torch

__all__ = ["fsim_matrix"]


def fsim_matrix(versions: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """FSIMc between every pair of ``versions`` ([K, H, W, 3] uint8) as a
    symmetric [K, K] float64 matrix with a diagonal of 1.

    Pairs go through ``piq.fsim`` `batch_size` at a time to bound memory.
    """
    if versions.ndim != 4 or versions.shape[-1] != 3 or versions.dtype != np.uint8:
        raise ValueError(f"expected [K, H, W, 3] uint8 versions, got {versions.shape} {versions.dtype}")
    k = versions.shape[0]
    images = torch.from_numpy(np.ascontiguousarray(versions)).permute(0, 3, 1, 2).float()
    rows, cols = np.triu_indices(k, 1)
    values = np.empty(len(rows))
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            i = torch.from_numpy(rows[start : start + batch_size])
            j = torch.from_numpy(cols[start : start + batch_size])
            scores = piq.fsim(images[i], images[j], reduction="none", data_range=255, chromatic=True)
            values[start : start + batch_size] = scores.double().numpy()
    matrix = np.eye(k)
    matrix[rows, cols] = values
    matrix[cols, rows] = values
    return matrix
