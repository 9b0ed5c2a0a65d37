"""extract on Beam's PortableRunner with an external SDK worker pool: workers in processes of their own, as
Dataflow, Flink and Spark run Python, so pickling, per-worker setup and joins over the Fn API are real."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines import extract, filtering, score
from tests.collections_corpus import photo_bytes, write_shards
from transforms.store import read_table

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port}")


@pytest.fixture(scope="module")
def portable(tmp_path_factory):
    """Beam flags for a job service and an external worker pool, each a process of its own."""
    job, pool = _free_port(), _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           # the pool starts each SDK worker as `python`: this interpreter's, with Beam and grepq installed
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    logs = tmp_path_factory.mktemp("portable")
    processes = [
        subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                          f"--service_port={pool}"], env=env, stdout=open(logs / "pool.log", "w"),
                         stderr=subprocess.STDOUT),
        subprocess.Popen([sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                          f"--port={job}", f"--staging_dir={logs / 'staging'}"], env=env,
                         stdout=open(logs / "job.log", "w"), stderr=subprocess.STDOUT)]
    try:
        _wait_for(pool)
        _wait_for(job)
        yield ["--runner=PortableRunner", f"--job_endpoint=localhost:{job}", "--environment_type=EXTERNAL",
               f"--environment_config=localhost:{pool}"]
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_extract_and_incremental_extract_run_on_an_external_worker_pool(portable, photos_dir, model_flags,
                                                                        tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    photos = photo_bytes(photos_dir)
    for name in list(photos)[:3]:
        (folder / name).write_bytes(photos[name])
    write_shards(tmp_path / "shards", dict(list(photos.items())[3:]), 4)
    argv = ["--input", str(folder / "*"), "--input", str(tmp_path / "shards" / "*.tar"), "--output", str(out),
            *model_flags, "--max-patches", "8", *portable]
    first = extract.run(argv)
    assert first["counts"]["images_scored"] == len(photos)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "new.png")
    again = extract.run([*argv, "--incremental"])
    assert again["counts"]["images_read"] == 1 and again["counts"]["images_scored"] == 1
    assert again["counts"]["images_skipped_incremental"] == len(photos)
    rows = read_table(str(out), "features").to_pandas()
    assert len(rows) == len(photos) + 1 and rows.hl_features.notna().all()

    Image.fromarray(np.full((40, 40, 3), 255, np.uint8)).save(folder / "new.png")  # changed in place
    extract.run([*argv, "--incremental"])
    scored = tmp_path / "scored"
    score.run(["--features", str(out), "--output", str(scored), "--keep-top-fraction", "0.5", *portable])
    scores = read_table(str(scored), "scores").to_pandas()
    assert len(scores) == len(photos) + 1 and scores.path.is_unique  # the changed file once, as it is now
    filtering.run(["--scores", str(scored), "--features", str(out), "--output", str(tmp_path / "kept"),
                   "--rejected", str(tmp_path / "rejected"), *portable])
    members = [name for folder in ("kept", "rejected") for shard in (tmp_path / folder).glob("*.tar")
               for name in tarfile.open(shard).getnames()]
    assert len(members) == 4 * (len(photos) - 3)  # each sample of the shards, kept or rejected: 3 members + grepq.json
