"""gs:// input and output against a real GCS emulator on 127.0.0.1 (no mocks)."""
import os
import socket
from urllib.parse import unquote

import fsspec
import pytest
import webdataset as wds
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from pipelines import extract, filtering, score
from tests.collections_corpus import caption, photo_bytes, write_shards
from transforms.store import read_table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs():
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="grepq-test")
    server.start()
    saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT")}
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    # The emulator needs no credentials: connect anonymously at once instead
    # of letting Beam retry Google's credential discovery for ~20 s.
    from apache_beam.internal.gcp.auth import _Credentials

    _Credentials._credentials_init, _Credentials._credentials = True, None
    yield storage.Client(project="test", credentials=AnonymousCredentials()).bucket("grepq-test")
    _Credentials._credentials_init = False
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


def test_extract_reads_gs_uris_from_the_emulator(gcs, photos_dir, model_flags, tmp_path):
    names = sorted(p.name for p in photos_dir.glob("*.jpg"))
    for name in names:
        gcs.blob(f"images/{name}").upload_from_filename(str(photos_dir / name))
    gcs.blob("images/broken.jpg").upload_from_string(b"\xff\xd8\xff garbage")
    out = "gs://grepq-test/runs/night1"
    extract.run(["--input", "gs://grepq-test/images/*.jpg", "--output", out, *model_flags, "--batch-size", "4"])
    written = sorted(b.name for b in gcs.list_blobs(prefix="runs/night1/"))
    shards = [n for n in written if n.endswith(".parquet")]
    # two shards and the run's manifest; the lock (a generation-matched create) is gone again
    assert len(shards) == 2 and [n for n in written if n not in shards] == [
        f"runs/night1/runs/{shards[0].rsplit('/', 1)[-1][:27]}.json"]
    rows = read_table(out, "features").to_pandas()
    dead = read_table(out, "dead_letters").to_pandas()
    assert sorted(rows.path) == [f"gs://grepq-test/images/{n}" for n in names]
    assert list(dead.path) == ["gs://grepq-test/images/broken.jpg"]
    assert rows.ll_features.map(len).eq(128).all()


def test_shards_and_lists_on_gs_give_keyed_rows_and_a_filtered_copy(gcs, photos_dir, model_flags, tmp_path):
    photos = photo_bytes(photos_dir)
    for shard in write_shards(tmp_path / "shards", photos, 4):
        gcs.blob(f"shards/{shard.name}").upload_from_filename(str(shard))
    loose = sorted(photos_dir.glob("*.jpg"))[0]
    gcs.blob(f"loose/{loose.name}").upload_from_filename(str(loose))
    gcs.blob("lists/new.txt").upload_from_string(
        "gs://grepq-test/shards/00001.tar\ngs://grepq-test/loose/missing.jpg\n")
    gcs.blob("lists/inventory.csv").upload_from_string(f"bucket,name,size\ngrepq-test,loose/{loose.name},1\n")
    out = "gs://grepq-test/collections/night1"
    extract.run(["--input", "gs://grepq-test/shards/{00000..00000}.tar", "--input-list",
                 "gs://grepq-test/lists/new.txt", "--input-list", "gs://grepq-test/lists/inventory.csv",
                 "--output", out, *model_flags, "--pathways", "ll", "--max-patches", "8"])
    rows = read_table(out, "features").to_pandas()
    dead = read_table(out, "dead_letters").to_pandas()
    shard_rows = [p for p in rows.path if p.startswith("tar://")]
    assert len(shard_rows) == len(photos) and all(p.endswith(("::gs://grepq-test/shards/00000.tar",
                                                              "::gs://grepq-test/shards/00001.tar"))
                                                  for p in shard_rows)
    assert f"gs://grepq-test/loose/{loose.name}" in set(rows.path)
    assert list(dead.path) == ["gs://grepq-test/loose/missing.jpg"]

    score.run(["--features", out, "--output", out, "--keep-top-fraction", "0.5"])
    filtering.run(["--scores", out, "--output", "gs://grepq-test/collections/kept", "--shard-size", "2"])
    fs = fsspec.filesystem("gs")
    local = tmp_path / "kept"
    fs.get("grepq-test/collections/kept/", str(local), recursive=True)
    kept = list(wds.WebDataset(sorted(str(p) for p in local.glob("*.tar")), shardshuffle=False))
    scores = read_table(out, "scores").to_pandas()
    assert len(kept) == int(scores[scores.path.str.startswith("tar://")].keep.sum()) > 0
    assert all(s["txt"] == caption(next(n for i, n in enumerate(photos) if f"{i:09d}" == s["__key__"]))
               for s in kept)
    assert (local / "_grepq_filter.json").exists()


def test_a_no_op_rerun_over_gs_downloads_no_input(gcs, photos_dir, model_flags, monkeypatch):
    from gcp_storage_emulator.server import RequestHandler

    for photo in sorted(photos_dir.glob("*.jpg")):
        gcs.blob(f"nightly/{photo.name}").upload_from_filename(str(photo))
    argv = ["--input", "gs://grepq-test/nightly/*.jpg", "--output", "gs://grepq-test/nightly-out", *model_flags,
            "--pathways", "ll", "--max-patches", "8"]
    extract.run(argv)
    requests = []
    real = RequestHandler.do_GET
    monkeypatch.setattr(RequestHandler, "do_GET", lambda self: (requests.append(unquote(self.path)), real(self))[1])
    manifest = extract.run([*argv, "--incremental"])
    downloads = [r for r in requests if "nightly/" in r and ("alt=media" in r or r.startswith("/download/")
                                                             or r.startswith("/grepq-test/nightly/"))]
    assert manifest["counts"]["images_skipped_incremental"] == len(list(photos_dir.glob("*.jpg")))
    assert downloads == [] and any("nightly" in r for r in requests)  # listed, never downloaded
