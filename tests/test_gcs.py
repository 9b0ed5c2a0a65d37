"""gs:// input and output against a real GCS emulator on 127.0.0.1 (no mocks)."""
import os
import socket

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from pipelines import extract
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
