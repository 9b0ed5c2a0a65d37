"""The two training losses of GRepQ.

docs/method.md, "Training the LL encoder" (QACL) and "Fine-tuning the HL encoder"
(GCL). Both follow the authors' reference code (``losses.py``,
``train_hlm.py``); the formulas below are exactly what is computed.

QACL, per photo with versions i, j = 1..K, anchor features f_i, second-view
features g_j (both L2-normalised) and FSIM matrix A::

    s_ij = f_i . g_j / tau,        w_ij = 2 - 2 / (1 + A_ij^2)
    row_i = -log( sum_j w_ij exp(s_ij) / sum_j exp(s_ij) )
    col_j = -log( sum_i w_ij exp(s_ij) / sum_i exp(s_ij) )
    L = mean_i row_i + mean_j col_j            (the two directions summed)

and the batch loss is the mean of L over photos. It is evaluated with
``logsumexp`` and ``log w = log 2 + 2 log|A| - log(1 + A^2)``, so large
logits and A = 0 (w = 0) stay finite as long as every row and column has one
non-zero weight (the diagonal, A_ii = 1, does).

QACL only compares versions of one photo. The across-photo term (grepq's
own, off by default) compares every version of every photo in the batch:
a linear head h (thrown away after training) scores each version's feature,
and with q its FSIM to its own reference (A_i0: one scale for every photo,
1 for the reference itself)::

    L_across = 1 - pearson(h(f), q)     over all B x K versions together

so a version of one photo and a version of another are ranked against each
other, as a ridge on the features must rank unseen photos.

GCL, on projected embeddings z (cosine similarity c(a, b) of the
L2-normalised rows, temperature T), groups L (lowest pseudo-label) and H
(highest), each with at least two members. For a member a of group G, with
G' the other group::

    p_a = mean_{b in G, b != a} c(a, b)
    l_a = -log( exp(p_a / T) / (exp(p_a / T) + sum_{c in G'} exp(c(a, c) / T)) )
    L = mean over all members a of L and H of l_a

That is SimCLR's NT-Xent with the mean similarity to the own group as the
positive and the other group as the negatives, as in the reference.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ProjectionHead",
    "across_photo_loss",
    "gcl_loss",
    "prompt_pseudo_labels",
    "qacl_loss",
    "select_groups",
]


def qacl_loss(f: torch.Tensor, g: torch.Tensor, A: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """Quality-aware contrastive loss of anchor features `f` and second-view
    features `g` ([B, K, D]) weighted by the FSIM matrices `A` ([B, K, K])."""
    if f.ndim != 3 or f.shape != g.shape or A.shape != (*f.shape[:2], f.shape[1]):
        raise ValueError(
            "expected f, g [B, K, D] and A [B, K, K], "
            f"got {tuple(f.shape)}, {tuple(g.shape)}, {tuple(A.shape)}"
        )
    f = F.normalize(f, dim=-1)
    g = F.normalize(g, dim=-1)
    s = f @ g.transpose(-1, -2) / tau
    A = A.to(s.dtype)
    log_w = math.log(2.0) + 2.0 * torch.log(A.abs()) - torch.log1p(A * A)
    rows = torch.logsumexp(s, dim=-1) - torch.logsumexp(s + log_w, dim=-1)
    cols = torch.logsumexp(s, dim=-2) - torch.logsumexp(s + log_w, dim=-2)
    return (rows.mean(dim=-1) + cols.mean(dim=-1)).mean()


def across_photo_loss(scores: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """1 - Pearson correlation of the head's `scores` with `quality` (both [N], versions of all photos
    together): 0 when the scores are a rising linear map of the quality, 2 when a falling one."""
    if scores.shape != quality.shape or scores.ndim != 1 or scores.numel() < 2:
        raise ValueError(f"expected scores and quality [N], N >= 2, got {tuple(scores.shape)}, {tuple(quality.shape)}")
    s = scores - scores.mean()
    q = (quality - quality.mean()).to(s.dtype)
    return 1 - (s * q).sum() / (s.norm() * q.norm()).clamp_min(1e-12)


def prompt_pseudo_labels(
    embeddings: torch.Tensor, text_features: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """q = sigmoid((cos(e, t_good) - cos(e, t_bad)) / temperature) per row of
    `embeddings` ([N, D]); `text_features` rows are (good, bad) prompts."""
    if text_features.shape[0] != 2:
        raise ValueError(f"expected text_features [2, D] (good, bad), got {tuple(text_features.shape)}")
    cos = F.normalize(embeddings, dim=-1) @ F.normalize(text_features, dim=-1).T
    return torch.sigmoid((cos[:, 0] - cos[:, 1]) / temperature)


def select_groups(q: torch.Tensor, tau_g: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the max(1, N // tau_g) lowest and highest pseudo-labels `q`
    ([N]), each ordered from the extreme inwards (stable sort)."""
    n = max(1, q.shape[0] // tau_g)
    if 2 * n > q.shape[0]:
        raise ValueError(f"{q.shape[0]} pseudo-labels cannot form two disjoint groups of {n}")
    order = torch.argsort(q.detach(), stable=True)
    return order[:n], order[-n:].flip(0)


class ProjectionHead(nn.Module):
    """GCL projection head: Linear(in_dim -> out_dim) then ReLU; thrown away
    after training."""

    def __init__(self, in_dim: int = 1024, out_dim: int = 128):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(x))


def gcl_loss(
    z: torch.Tensor, low_idx: torch.Tensor, high_idx: torch.Tensor, temperature: float = 0.5
) -> torch.Tensor:
    """Group contrastive loss of projected embeddings `z` ([N, d]) between the
    rows `low_idx` and the rows `high_idx` (formula in the module docstring)."""
    sizes = (len(low_idx), len(high_idx))
    if min(sizes) < 2:
        raise ValueError(f"each group needs at least 2 members, got {sizes}")
    idx = torch.cat([low_idx, high_idx])
    if torch.unique(idx).numel() != idx.numel():
        raise ValueError("low and high groups must be disjoint sets of rows")
    zn = F.normalize(z[idx], dim=-1)
    sim = zn @ zn.T / temperature
    is_high = torch.arange(len(idx), device=z.device) >= sizes[0]
    same = is_high[:, None] == is_high[None, :]
    others = same & ~torch.eye(len(idx), dtype=torch.bool, device=z.device)
    positive = (sim * others).sum(dim=1) / others.sum(dim=1)
    negatives = sim.masked_fill(same, float("-inf"))
    logits = torch.cat([positive[:, None], negatives], dim=1)
    return (torch.logsumexp(logits, dim=1) - positive).mean()
