"""The FSIM "annotator" matrix between the K versions of one photo.

docs/method.md, "Training the LL encoder": the similarity matrix A (K x K) that
weights the quality-aware contrastive loss is FSIM (Zhang et al., "FSIM: A
Feature Similarity Index for Image Quality Assessment", TIP 2011) between
each pair of versions, with ones on the diagonal. It is FSIMc, the colour
form, exactly as ``piq.fsim(..., chromatic=True)`` computes it (a test holds
the two equal).

``piq.fsim`` takes one pair at a time and so computes each version's phase
congruency (the costly part: a bank of log-Gabor filters through FFTs) once
per pair it is in, 2(K-1) times. Here every version's per-image maps (phase
congruency, gradient magnitude, the I and Q chroma of YIQ) are computed once,
with piq's own functions, and only the cheap per-pixel similarity of each
pair is formed: for K = 13 that is 13 phase-congruency maps instead of 156.

FSIM is symmetric in its two arguments by definition, so each unordered pair
is computed once and mirrored; the diagonal is set to exactly 1.
"""
from __future__ import annotations

import numpy as np
import torch
from piq.fsim import _construct_filters, _phase_congruency
from piq.functional import gradient_map, rgb2yiq, scharr_filter, similarity_map

__all__ = ["fsim_matrix"]

# The constants of the FSIM paper (and of piq.fsim).
_T1, _T2, _T3, _T4, _LAMBDA = 0.85, 160, 200, 200, 0.03


def _maps(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image FSIMc maps of ``[N, 3, H, W]`` float images in [0, 255]."""
    kernel = max(1, round(min(images.shape[-2:]) / 256))
    yiq = rgb2yiq(torch.nn.functional.avg_pool2d(images, kernel))
    lum = yiq[:, :1]
    filters = _construct_filters(lum)
    scharr = scharr_filter(device=lum.device, dtype=lum.dtype)
    return {"pc": _phase_congruency(lum, filters=filters),
            "gm": gradient_map(lum, torch.stack([scharr, scharr.transpose(-1, -2)])),
            "i": yiq[:, 1:2], "q": yiq[:, 2:]}


def _pair_scores(maps: dict[str, torch.Tensor], i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """FSIMc of versions i[n] and j[n] from their maps (piq.fsim's final step)."""
    pc_x, pc_y = maps["pc"][i], maps["pc"][j]
    pc_max = torch.maximum(pc_x, pc_y)
    score = (similarity_map(maps["gm"][i], maps["gm"][j], _T2) * similarity_map(pc_x, pc_y, _T1) * pc_max
             * torch.abs(similarity_map(maps["i"][i], maps["i"][j], _T3)
                         * similarity_map(maps["q"][i], maps["q"][j], _T4)) ** _LAMBDA)
    return score.sum(dim=[1, 2, 3]) / pc_max.sum(dim=[1, 2, 3])


def fsim_matrix(versions: np.ndarray, batch_size: int = 32, device: str | torch.device = "cpu") -> np.ndarray:
    """FSIMc between every pair of ``versions`` ([K, H, W, 3] uint8) as a
    symmetric [K, K] float64 matrix with a diagonal of 1.

    Pairs are combined `batch_size` at a time to bound memory; the maps and
    pairs are computed on the torch `device`.
    """
    if versions.ndim != 4 or versions.shape[-1] != 3 or versions.dtype != np.uint8:
        raise ValueError(f"expected [K, H, W, 3] uint8 versions, got {versions.shape} {versions.dtype}")
    k = versions.shape[0]
    rows, cols = np.triu_indices(k, 1)
    values = np.empty(len(rows))
    with torch.no_grad():
        images = torch.from_numpy(np.ascontiguousarray(versions)).to(device)
        maps = _maps(images.permute(0, 3, 1, 2).float())
        i, j = (torch.from_numpy(index).to(device) for index in (rows, cols))
        for start in range(0, len(rows), batch_size):
            pairs = slice(start, start + batch_size)
            values[pairs] = _pair_scores(maps, i[pairs], j[pairs]).double().cpu().numpy()
    matrix = np.eye(k)
    matrix[rows, cols] = values
    matrix[cols, rows] = values
    return matrix
