"""QACL and GCL (grepq_core/training/losses.py): the formulas, evaluated by hand, and training on real photos."""
import math

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from grepq_core.model import views
from grepq_core.model.ll_encoder import LLEncoder
from grepq_core.training.distortions import apply_distortion
from grepq_core.training.fsim import fsim_matrix
from grepq_core.training.losses import (
    ProjectionHead,
    across_photo_loss,
    gcl_loss,
    prompt_pseudo_labels,
    qacl_loss,
    select_groups,
)


def _decoded(tmp_path, name: str, size: int) -> np.ndarray:
    """A size x size crop of a scikit-image photo, saved as PNG and decoded with Pillow."""
    path = tmp_path / f"{name}.png"
    Image.fromarray(getattr(skimage.data, name)()[:size, :size]).save(path)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _qacl_by_hand(f: np.ndarray, g: np.ndarray, A: np.ndarray, tau: float) -> float:
    """docs/method.md's QACL, one photo, one term at a time."""
    total = 0.0
    for b in range(f.shape[0]):
        k = f.shape[1]
        s = [[_unit(f[b, i]) @ _unit(g[b, j]) / tau for j in range(k)] for i in range(k)]
        w = [[2 - 2 / (1 + A[b, i, j] ** 2) for j in range(k)] for i in range(k)]
        row = sum(-math.log(sum(w[i][j] * math.exp(s[i][j]) for j in range(k)) /
                            sum(math.exp(s[i][j]) for j in range(k))) for i in range(k)) / k
        col = sum(-math.log(sum(w[i][j] * math.exp(s[i][j]) for i in range(k)) /
                            sum(math.exp(s[i][j]) for i in range(k))) for j in range(k)) / k
        total += row + col
    return total / f.shape[0]


def _similarity_matrices(batch: int, k: int, rng: np.random.Generator) -> np.ndarray:
    upper = np.triu(rng.uniform(0.2, 1.0, size=(batch, k, k)), 1)
    return upper + upper.transpose(0, 2, 1) + np.eye(k)


def test_qacl_matches_the_formula_term_by_term():
    rng = np.random.default_rng(0)
    f, g = rng.normal(size=(2, 3, 4, 6))
    A = _similarity_matrices(3, 4, rng)
    for tau in (0.5, 0.1):
        loss = qacl_loss(torch.from_numpy(f), torch.from_numpy(g), torch.from_numpy(A), tau=tau)
        assert loss.item() == pytest.approx(_qacl_by_hand(f, g, A, tau), rel=1e-10)


def test_qacl_is_zero_when_all_versions_count_as_equal():
    f, g = torch.randn(2, 2, 5, 8)
    assert qacl_loss(f, g, torch.ones(2, 5, 5)).item() == pytest.approx(0.0, abs=1e-6)


def test_qacl_stays_finite_for_sharp_logits_and_zero_similarity():
    f = torch.randn(2, 5, 8, requires_grad=True)
    g = torch.randn(2, 5, 8, requires_grad=True)
    A = torch.eye(5).expand(2, 5, 5)  # w = 0 off the diagonal
    loss = qacl_loss(f, g, A, tau=0.001)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(f.grad).all() and torch.isfinite(g.grad).all()


def test_qacl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\[B, K, K\]"):
        qacl_loss(torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.ones(2, 4, 4))


@pytest.fixture(scope="module")
def graded_photos(tmp_path_factory):
    """Two real photos as K=5 versions each (reference, Gaussian blur levels 2..5) and their FSIM matrices."""
    tmp = tmp_path_factory.mktemp("photos")
    stacks, matrices = [], []
    for name in ("astronaut", "chelsea"):
        photo = _decoded(tmp, name, 224)
        blurred = [apply_distortion(photo, "gaussian_blur", level) for level in range(2, 6)]
        versions = np.stack([photo] + blurred)
        stacks.append(torch.from_numpy(versions).permute(0, 3, 1, 2))
        matrices.append(fsim_matrix(versions))
    return torch.stack(stacks), torch.from_numpy(np.stack(matrices)).float()


def test_qacl_trains_a_tiny_ll_encoder_on_real_distorted_photos(graded_photos):
    versions, A = graded_photos  # [2, 5, 3, 224, 224] uint8, [2, 5, 5]
    assert (A[:, 0, 1:] < 1).all()
    gen = torch.Generator().manual_seed(0)
    anchor = views.fragments(versions, generator=gen)
    second = views.fragments(versions, generator=gen).flip(-1)
    x = torch.cat([anchor, second]).flatten(0, 1)
    x = views.normalize(x, views.IMAGENET_MEAN, views.IMAGENET_STD)
    torch.manual_seed(0)
    encoder = LLEncoder(width=8)
    opt = torch.optim.AdamW(encoder.parameters(), lr=1e-3, weight_decay=0.05)
    losses = []
    for _ in range(4):
        f, g = encoder(x).reshape(2, *versions.shape[:2], -1)
        loss = qacl_loss(f, g, A)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


def test_across_photo_term_is_one_minus_the_pearson_correlation():
    rng = np.random.default_rng(0)
    quality = rng.uniform(0.7, 1.0, 12)
    scores = quality * 3 + rng.normal(0, 0.05, 12)
    expected = 1 - np.corrcoef(scores, quality)[0, 1]
    assert across_photo_loss(torch.tensor(scores), torch.tensor(quality)).item() == pytest.approx(expected)
    q = torch.tensor(quality)
    assert across_photo_loss(2 * q - 1, q).item() == pytest.approx(0, abs=1e-12)
    assert across_photo_loss(-q, q).item() == pytest.approx(2)
    assert math.isfinite(across_photo_loss(torch.zeros(4), torch.arange(4.0)).item())  # constant scores
    with pytest.raises(ValueError, match="expected scores and quality"):
        across_photo_loss(torch.zeros(4), torch.zeros(5))


def test_pseudo_labels_follow_the_prompt_formula():
    torch.manual_seed(0)
    text = torch.randn(2, 16)
    e = torch.cat([3 * text, torch.randn(6, 16)])  # rows 0 and 1 are the good and the bad prompt
    q = prompt_pseudo_labels(e, text)
    for n in range(len(e)):
        cos = [torch.nn.functional.cosine_similarity(e[n], t, dim=0).item() for t in text]
        assert q[n].item() == pytest.approx(1 / (1 + math.exp(-(cos[0] - cos[1]) / 0.1)), rel=1e-5)
    assert q[0] > 0.5 > q[1]


def test_select_groups_takes_the_extremes():
    q = torch.tensor([0.5, 0.9, 0.1, 0.7, 0.2, 0.95, 0.3, 0.6])
    low, high = select_groups(q, tau_g=4)
    assert low.tolist() == [2, 4] and high.tolist() == [5, 1]
    low, high = select_groups(torch.rand(128, generator=torch.Generator().manual_seed(1)), tau_g=32)
    assert len(low) == len(high) == 4
    assert set(low.tolist()).isdisjoint(high.tolist())
    with pytest.raises(ValueError, match="disjoint"):
        select_groups(torch.rand(1))


def _gcl_by_hand(z: np.ndarray, low: list, high: list, t: float) -> float:
    """The GCL formula of the losses module's docstring, one member at a time."""
    def cos(a, b):
        return _unit(z[a]) @ _unit(z[b])

    terms = []
    for own, other in ((low, high), (high, low)):
        for a in own:
            p = sum(cos(a, b) for b in own if b != a) / (len(own) - 1)
            neg = sum(math.exp(cos(a, c) / t) for c in other)
            terms.append(-math.log(math.exp(p / t) / (math.exp(p / t) + neg)))
    return sum(terms) / len(terms)


def test_gcl_matches_the_formula_member_by_member():
    z = np.random.default_rng(0).normal(size=(10, 5))
    low, high = [3, 7, 0], [1, 9, 4]
    for t in (0.5, 0.2):
        loss = gcl_loss(torch.from_numpy(z), torch.tensor(low), torch.tensor(high), temperature=t)
        assert loss.item() == pytest.approx(_gcl_by_hand(z, low, high, t), rel=1e-10)


def test_gcl_is_lower_for_separated_groups_than_for_mixed_ones():
    gen = torch.Generator().manual_seed(0)
    centre = torch.randn(16, generator=gen)
    spread = 0.1 * torch.randn(8, 16, generator=gen)
    z = torch.cat([centre + spread[:4], -centre + spread[4:]])
    separated = gcl_loss(z, torch.arange(4), torch.arange(4, 8))
    mixed = gcl_loss(z, torch.tensor([0, 1, 4, 5]), torch.tensor([2, 3, 6, 7]))
    assert separated < mixed


def test_gcl_rejects_singleton_or_overlapping_groups():
    z = torch.randn(8, 4)
    with pytest.raises(ValueError, match="at least 2"):
        gcl_loss(z, torch.tensor([0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="disjoint"):
        gcl_loss(z, torch.tensor([0, 1]), torch.tensor([1, 2]))


def test_gcl_pipeline_trains_the_projection_head():
    """Pseudo-labels -> groups -> head -> GCL, as one HL step, on fixed embeddings."""
    gen = torch.Generator().manual_seed(0)
    embeddings, text = torch.randn(64, 32, generator=gen), torch.randn(2, 32, generator=gen)
    low, high = select_groups(prompt_pseudo_labels(embeddings, text), tau_g=8)
    torch.manual_seed(0)
    head = ProjectionHead(in_dim=32, out_dim=16)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        z = head(embeddings)
        assert z.shape == (64, 16) and (z >= 0).all()
        loss = gcl_loss(z, low, high)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
