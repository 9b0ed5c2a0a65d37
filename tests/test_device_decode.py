"""Device decoding (the GPU path) run on the CPU device: same views, same features, safe fallbacks."""

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
from apache_beam.ml.inference.base import KeyedModelHandler
from apache_beam.testing.util import assert_that
from conftest import photo
from PIL import Image

from grepq_core.errors import ImageError
from grepq_core.images.decode import MAX_DEVICE_SCANS, decode_image, device_decodable
from grepq_core.images.limits import DecodeLimits
from grepq_core.model.cut import image_views
from grepq_core.model.extractor import Extractor
from grepq_core.model.profiles import spec_for
from pipelines import extract
from tests.bad_corpus import scan_bomb_jpeg
from transforms.inference import GrepqModelHandler
from transforms.read import ImageRecord
from transforms.store import read_table

SIZES = [(1024, 768), (640, 480), (300, 451), (180, 120)]


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpegs")
    paths = []
    for i, (w, h) in enumerate(SIZES):
        img = Image.fromarray(photo(("astronaut", "coffee", "chelsea", "rocket")[i])).resize((w, h), Image.BICUBIC)
        paths.append(root / f"{w}x{h}.jpg")
        img.save(paths[-1], quality=90)
    return paths


@pytest.fixture(scope="module")
def extractor(tiny_models):
    spec = spec_for(ll_weights=tiny_models["ll"], pristine=tiny_models["pristine"],
                    hl_model=tiny_models["hl_model"], hl_weights=tiny_models["hl"], device="cpu", batch_size=4)
    return Extractor.load(spec)


def test_device_views_and_features_match_the_cpu_path(jpegs, extractor):
    cpu = [image_views(decode_image(p.read_bytes()), extractor.spec) for p in jpegs]
    device = extractor.decode([p.read_bytes() for p in jpegs])
    cpu_rows, device_rows = extractor.encode(cpu), extractor.encode(device)
    for c, d, cr, dr in zip(cpu, device, cpu_rows, device_rows):
        assert (d.width, d.height) == (c.width, c.height)
        assert set(d.tensors) == set(c.tensors) == {"ll", "ll_patches", "hl"}
        for view in c.tensors:
            assert np.array_equal(np.asarray(d.tensors[view]), c.tensors[view]), view
        assert dr["decoder"] == "libjpeg-turbo" and cr["decoder"] == "cpu"
        np.testing.assert_allclose(dr["ll_features"], cr["ll_features"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(dr["hl_features"], cr["hl_features"], rtol=0, atol=1e-5)
        assert dr["zs_ll"] == pytest.approx(cr["zs_ll"], abs=1e-6)


def test_cmyk_and_png_are_not_sent_to_the_device_decoder(tmp_path):
    img = Image.fromarray(photo("coffee"))
    img.convert("CMYK").save(tmp_path / "cmyk.jpg")
    img.save(tmp_path / "coffee.png")
    img.save(tmp_path / "coffee.jpg")
    assert not device_decodable((tmp_path / "cmyk.jpg").read_bytes())
    assert not device_decodable((tmp_path / "coffee.png").read_bytes())
    assert device_decodable((tmp_path / "coffee.jpg").read_bytes())


def test_jpegs_whose_decode_the_budgets_cannot_stop_stay_off_the_device(jpegs):
    """A device decoder cannot be stopped: many scans or a size over the memory budget go to Pillow instead."""
    own = scan_bomb_jpeg(64, 64, 0).count(b"\xff\xda")  # the scans of the progressive JPEG the bomb extends
    assert device_decodable(scan_bomb_jpeg(64, 64, MAX_DEVICE_SCANS - own))
    assert not device_decodable(scan_bomb_jpeg(64, 64, MAX_DEVICE_SCANS - own + 1))
    data = jpegs[0].read_bytes()  # 1024x768
    assert device_decodable(data, DecodeLimits(max_memory=1024 * 768 * 10, later_bytes_per_pixel=7))
    assert not device_decodable(data, DecodeLimits(max_memory=1024 * 768 * 10 - 1, later_bytes_per_pixel=7))


def test_a_model_batch_holds_at_most_max_batch_bytes(jpegs):
    """On the device path whole files wait for their batch: 40 JPEGs padded to 120 MB took 9 GB, 32 at a time."""
    spec = spec_for(pathways="ll", decode="gpu", device="cpu", batch_size=4, max_batch_bytes=8 * 2**20)
    padded = jpegs[0].read_bytes() + bytes(3 * 2**20)  # a valid JPEG, padded past its end marker
    records = ([(f"padded{i}", ImageRecord("-", padded)) for i in range(6)]
               + [(f"plain{i}", ImageRecord("-", jpegs[1].read_bytes())) for i in range(6)])

    def bounded(batches):
        assert sorted(n for n, _ in batches) and sum(n for n, _ in batches) == len(records)
        assert all(n <= spec.batch_size and (size <= spec.max_batch_bytes or n == 1) for n, size in batches), batches

    with beam.Pipeline() as p:
        batches = (p
                   | beam.Create(records)
                   | beam.BatchElements(**KeyedModelHandler(GrepqModelHandler(spec)).batch_elements_kwargs())
                   | beam.Map(lambda batch: (len(batch), sum(record.num_bytes() for _, record in batch))))
        assert_that(batches, bounded)


def test_a_bad_jpeg_in_a_device_batch_is_dead_lettered_alone(jpegs, extractor):
    datas = [p.read_bytes() for p in jpegs]
    datas.insert(1, datas[0][: len(datas[0]) // 2])
    decoded = extractor.decode(datas)
    assert isinstance(decoded[1], ImageError) and (decoded[1].stage, decoded[1].reason) == ("decode", "truncated")
    rows = extractor.encode([d for i, d in enumerate(decoded) if i != 1])
    assert len(rows) == len(jpegs) and all(r["ll_features"] is not None for r in rows)


def test_pipeline_with_gpu_decode_scores_mixed_formats(jpegs, model_flags, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in jpegs:
        (corpus / p.name).write_bytes(p.read_bytes())
    img = Image.fromarray(photo("coffee"))
    img.convert("CMYK").save(corpus / "cmyk.jpg")
    img.save(corpus / "coffee.png")
    (corpus / "cut.jpg").write_bytes(jpegs[0].read_bytes()[:5000])
    flags = [*model_flags, "--batch-size", "4"]
    extract.run(["--input", str(corpus / "*"), "--output", str(tmp_path / "gpu"), "--decode", "gpu", *flags])
    extract.run(["--input", str(corpus / "*"), "--output", str(tmp_path / "cpu"), "--decode", "cpu", *flags])
    gpu = read_table(str(tmp_path / "gpu"), "features").to_pandas().set_index("path").sort_index()
    cpu = read_table(str(tmp_path / "cpu"), "features").to_pandas().set_index("path").sort_index()
    dead = read_table(str(tmp_path / "gpu"), "dead_letters").to_pandas()
    assert list(dead.path) == [str(corpus / "cut.jpg")] and list(dead.reason) == ["truncated"]
    decoders = gpu.decoder.rename(lambda p: p.rsplit("/", 1)[-1]).to_dict()
    assert decoders["cmyk.jpg"] == decoders["coffee.png"] == "cpu"
    assert {decoders[p.name] for p in jpegs} == {"libjpeg-turbo"}
    assert (cpu.decoder == "cpu").all()
    pd.testing.assert_frame_equal(gpu.drop(columns="decoder"), cpu.drop(columns="decoder"), atol=1e-5, check_exact=False)


def test_two_worker_processes_give_the_same_rows_as_one(jpegs, model_flags, tmp_path):
    flags = ["--input", str(jpegs[0].parent / "*.jpg"), *model_flags, "--batch-size", "4"]
    extract.run([*flags, "--output", str(tmp_path / "one")])
    extract.run([*flags, "--output", str(tmp_path / "two"), "--direct_running_mode=multi_processing",
                 "--direct_num_workers=2"])
    one, two = (read_table(str(tmp_path / n), "features").to_pandas().sort_values("path").reset_index(drop=True)
                for n in ("one", "two"))
    pd.testing.assert_frame_equal(one, two)
