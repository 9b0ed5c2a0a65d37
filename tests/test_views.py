"""grepq_core.views on real photos, against naive loops and torchvision/open_clip."""

import io
import warnings

import numpy as np
import open_clip
import pytest
import skimage.data
import torch
import torchvision.transforms as T
from PIL import Image

from grepq_core.errors import ImageError
from grepq_core.images.decode import decode_image
from grepq_core.model.views import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_UPSCALED_PIXELS,
    clip_view,
    ensure_min_size,
    fragment_positions,
    fragments,
    normalize,
    patches,
    to_tensor,
    upscaled_size,
)
from tests.conftest import DEVICES


def _jpeg(name: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(getattr(skimage.data, name)()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _photo(name: str = "coffee") -> torch.Tensor:
    """A real photo, decoded from JPEG bytes as the pipeline does."""
    return to_tensor(decode_image(_jpeg(name)))


def _naive_fragments(img: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, size: int) -> torch.Tensor:
    grid = ys.shape[0]
    out = torch.empty(3, grid * size, grid * size, dtype=img.dtype)
    for gy in range(grid):
        for gx in range(grid):
            y, x = int(ys[gy, gx]), int(xs[gy, gx])
            out[:, gy * size : (gy + 1) * size, gx * size : (gx + 1) * size] = img[:, y : y + size, x : x + size]
    return out


def _cell_bounds(length: int, grid: int, index: int) -> tuple[int, int]:
    return index * length // grid, (index + 1) * length // grid


def test_to_tensor_is_chw_contiguous_and_copies_read_only_arrays():
    array = decode_image(_jpeg("chelsea"))
    assert not array.flags.writeable  # decode_image wraps Pillow's buffer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = to_tensor(array)
    assert tensor.shape == (3, *array.shape[:2]) and tensor.dtype == torch.uint8 and tensor.is_contiguous()
    assert (tensor.permute(1, 2, 0).numpy() == array).all()
    with pytest.raises(ValueError):
        to_tensor(array[:, :, 0])


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((1, 1), (224, 224)), ((10, 300), (224, 6720)), ((8000, 200), (8960, 224)), ((225, 7), (7200, 224))],
)
def test_ensure_min_size_upscales_short_side_exactly(shape, expected):
    colour = torch.tensor([10, 200, 30], dtype=torch.uint8)[:, None, None]
    img = colour.expand(3, *shape).contiguous()
    out = ensure_min_size(img, 224)
    assert tuple(out.shape) == (3, *expected) and out.dtype == torch.uint8
    assert (out == colour).all()  # a flat colour stays exactly that colour


def test_ensure_min_size_keeps_content_and_large_images():
    photo = _photo("astronaut")
    assert ensure_min_size(photo, 224) is photo
    small = photo[:, ::8, ::8]  # 64x64
    up = ensure_min_size(small, 224)
    assert up.shape == (3, 224, 224)
    # shrinking the upscaled image back gives the small one again, up to interpolation error
    back = torch.nn.functional.interpolate(up[None].float(), size=(64, 64), mode="area")[0]
    assert (back - small.float()).abs().mean() < 8


@pytest.mark.parametrize(("shape", "upscaled"), [((1, 10000), (224, 2240000)), ((4000, 1), (896000, 224))])
def test_ensure_min_size_refuses_extreme_aspect_ratios_before_allocating(shape, upscaled):
    img = torch.zeros(3, *shape, dtype=torch.uint8)
    with pytest.raises(ImageError) as caught:
        ensure_min_size(img, 224)
    assert (caught.value.reason, caught.value.stage) == ("extreme_aspect_ratio", "prepare")
    assert f"{shape[1]}x{shape[0]}" in caught.value.detail
    assert f"{upscaled[1]}x{upscaled[0]}" in caught.value.detail


def test_upscale_cap_is_inclusive_and_spares_images_that_need_no_upscaling():
    assert MAX_UPSCALED_PIXELS == 40_000_000
    assert upscaled_size(1, 797, 224) == (224, 178528)  # 39,990,272 pixels: allowed
    with pytest.raises(ImageError):
        upscaled_size(1, 798, 224)  # 40,040,448 pixels
    assert upscaled_size(10, 20, 224, max_pixels=224 * 448) == (224, 448)
    with pytest.raises(ImageError):
        upscaled_size(10, 20, 224, max_pixels=224 * 448 - 1)
    huge = torch.zeros(1, 1, 1, dtype=torch.uint8).expand(3, 224, 200_000)  # 44.8 MP, already tall enough
    assert ensure_min_size(huge, 224) is huge
    assert ensure_min_size(torch.zeros(2, 3, 1, 60, dtype=torch.uint8), 224).shape == (2, 3, 224, 13440)


def test_fragment_positions_are_centred_in_their_cells_by_default():
    height, width, grid, size = 400, 600, 7, 32
    ys, xs = fragment_positions(height, width, grid, size)
    assert ys.shape == xs.shape == (grid, grid) and ys.dtype == torch.long
    assert torch.equal(ys, fragment_positions(height, width, grid, size)[0])
    for g in range(grid):
        top, bottom = _cell_bounds(height, grid, g)
        left, right = _cell_bounds(width, grid, g)
        assert (ys[g] == ys[g, 0]).all() and (xs[:, g] == xs[0, g]).all()
        assert abs((ys[g, 0] - top) - (bottom - size - ys[g, 0])) <= 1
        assert abs((xs[0, g] - left) - (right - size - xs[0, g])) <= 1


def test_random_positions_are_uniform_inside_cells():
    grid, size = 7, 32
    height, width = grid * (size + 2), grid * (size + 5)  # 3 and 6 possible starts per cell
    draws = [fragment_positions(height, width, grid, size, torch.Generator().manual_seed(s)) for s in range(60)]
    ys = torch.stack([d[0] for d in draws])
    xs = torch.stack([d[1] for d in draws])
    for g in range(grid):
        top, _ = _cell_bounds(height, grid, g)
        left, _ = _cell_bounds(width, grid, g)
        assert set((ys[:, g] - top).flatten().tolist()) == {0, 1, 2}
        assert set((xs[:, :, g] - left).flatten().tolist()) == set(range(6))
    assert not torch.equal(draws[0][0], draws[1][0])
    again = fragment_positions(height, width, grid, size, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], draws[0][0]) and torch.equal(again[1], draws[0][1])


def test_fragment_positions_reject_small_images():
    with pytest.raises(ValueError, match="ensure_min_size"):
        fragment_positions(223, 500)


def test_fragments_equal_a_naive_crop_and_stitch():
    photo = _photo("coffee")
    ys, xs = fragment_positions(*photo.shape[-2:])
    out = fragments(photo)
    assert out.shape == (3, 224, 224) and out.dtype == torch.uint8
    assert torch.equal(out, _naive_fragments(photo, ys, xs, 32))
    positions = fragment_positions(*photo.shape[-2:], grid=5, size=20, generator=torch.Generator().manual_seed(3))
    assert torch.equal(fragments(photo, 5, 20, positions=positions), _naive_fragments(photo, *positions, 20))


def test_fragments_share_random_positions_across_batch_dims():
    photo = _photo("coffee")
    versions = torch.stack([photo, 255 - photo, photo.flip(-1)])[None]  # [1, K=3, 3, H, W]
    out = fragments(versions, generator=torch.Generator().manual_seed(7))
    positions = fragment_positions(*photo.shape[-2:], generator=torch.Generator().manual_seed(7))
    assert out.shape == (1, 3, 3, 224, 224)
    for k in range(3):
        assert torch.equal(out[0, k], _naive_fragments(versions[0, k], *positions, 32))
    other = fragments(versions, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(out, other)


@pytest.mark.parametrize("name", ["coffee", "chelsea", "astronaut"])
def test_clip_view_matches_torchvision_and_open_clip(name):
    photo = _photo(name)
    if name == "chelsea":
        photo = photo.transpose(-1, -2).contiguous()  # portrait
    ours = clip_view(photo)
    assert ours.shape == (3, 224, 224) and ours.dtype == torch.uint8
    reference = T.Compose([T.Resize(224, T.InterpolationMode.BICUBIC, antialias=True), T.CenterCrop(224)])(photo)
    assert (ours.int() - reference.int()).abs().float().mean() < 1.5
    # open_clip's own preprocessing runs Pillow's bicubic on a PIL image.
    preprocess = open_clip.image_transform(224, is_train=False)
    theirs = preprocess(Image.fromarray(photo.permute(1, 2, 0).numpy()))
    grey_levels = (normalize(ours, CLIP_MEAN, CLIP_STD) - theirs) * torch.tensor(CLIP_STD)[:, None, None] * 255
    assert grey_levels.abs().mean() < 1.5


def test_clip_view_native_and_batched():
    photo = _photo("coffee")
    assert clip_view(photo, None) is photo
    batch = torch.stack([photo, photo.flip(-2)])
    assert torch.equal(clip_view(batch, 96), torch.stack([clip_view(photo, 96), clip_view(photo.flip(-2), 96)]))


def _photo_768x1024() -> torch.Tensor:
    image = Image.fromarray(skimage.data.coffee()).resize((1024, 768), Image.Resampling.BICUBIC)
    return to_tensor(np.asarray(image))


def test_patches_cover_every_stride_position():
    photo = _photo_768x1024()
    out = patches(photo, max_patches=None)
    starts = [(y, x) for y in range(0, 768 - 96 + 1, 48) for x in range(0, 1024 - 96 + 1, 48)]
    assert len(starts) == 300 and out.shape == (300, 3, 96, 96)
    for patch, (y, x) in zip(out, starts):
        assert torch.equal(patch, photo[:, y : y + 96, x : x + 96])


def test_patches_cap_is_an_evenly_spaced_deterministic_subset():
    photo = _photo_768x1024()
    every = patches(photo, max_patches=None)
    capped = patches(photo)
    assert capped.shape == (32, 3, 96, 96)
    assert torch.equal(capped, patches(photo))
    matches = (capped[:, None] == every[None]).flatten(2).all(-1)  # [32, 300]
    picked = matches.int().argmax(1)
    assert matches.any(1).all()
    assert picked[0] == 0 and picked[-1] == 299
    gaps = picked.diff()
    assert (gaps > 0).all() and gaps.max() - gaps.min() <= 1
    assert patches(photo, max_patches=500).shape[0] == 300


def test_patches_reject_small_or_batched_input():
    with pytest.raises(ValueError, match="ensure_min_size"):
        patches(torch.zeros(3, 95, 200, dtype=torch.uint8))
    with pytest.raises(ValueError):
        patches(torch.zeros(2, 3, 96, 96, dtype=torch.uint8))


def test_normalize_matches_torchvision_and_open_clip_constants():
    assert CLIP_MEAN == open_clip.constants.OPENAI_DATASET_MEAN
    assert CLIP_STD == open_clip.constants.OPENAI_DATASET_STD
    assert IMAGENET_MEAN == open_clip.constants.IMAGENET_MEAN
    assert IMAGENET_STD == open_clip.constants.IMAGENET_STD
    view = clip_view(_photo("coffee"))
    expected = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(view.float() / 255)
    out = normalize(view[None], IMAGENET_MEAN, IMAGENET_STD)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 224, 224)
    assert torch.allclose(out[0], expected, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_views_agree_across_devices(device):
    photo = _photo("chelsea")
    on_device = photo.to(device)
    generator = torch.Generator(device).manual_seed(0)
    positions = fragment_positions(*photo.shape[-2:], generator=generator)
    assert torch.equal(fragments(on_device, positions=positions).cpu(), fragments(photo, positions=positions))
    assert (clip_view(on_device).cpu().int() - clip_view(photo).int()).abs().max() <= 1
    assert torch.equal(patches(on_device).cpu(), patches(photo))
    small = photo[:, :20, :30]
    assert (ensure_min_size(small.to(device), 224).cpu().int() - ensure_min_size(small, 224).int()).abs().max() <= 1
    normalized = normalize(on_device, CLIP_MEAN, CLIP_STD)
    assert normalized.device.type == device
    assert torch.allclose(normalized.cpu(), normalize(photo, CLIP_MEAN, CLIP_STD), atol=1e-6)
