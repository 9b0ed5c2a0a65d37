"""What a nightly run costs at the size of a collection, and what compaction buys its readers.

    python benchmarks/nightly_scale.py [--rows 1000000] [--new 1000] [--runs 365] [--rows-per-run 1000]

1. Incremental extract: a synthetic output of `--rows` feature rows (the
   project's schema, the shipped LL model's identities, a committed
   manifest; the images need not exist) plus `--new` new JPEGs; then
   `grepq extract --incremental --pathways ll` on the new JPEGs, in a fresh
   process, and the same run into an empty output. Prints wall seconds and
   peak resident memory of both.
2. Compaction: a synthetic output of `--runs` committed runs of
   `--rows-per-run` rows each; `grepq score`, `grepq fit` (50 labels) and
   `grepq report` timed before and after `grepq compact`.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_throughput import make_corpus  # noqa: E402 - a sibling benchmark's corpus

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grepq_core.model.extractor import Extractor  # noqa: E402
from grepq_core.model.profiles import spec_for  # noqa: E402
from transforms import runs, store  # noqa: E402

_SHARD_ROWS = 100_000


def synthetic_output(output: Path, rows: int, runs_: int, identities: dict, seed: int = 0) -> None:
    """`runs_` committed runs holding `rows` feature rows in all, of the project's schema."""
    rng = np.random.default_rng(seed)
    schema = store.features_schema()
    (output / "features").mkdir(parents=True, exist_ok=True)
    per_run = -(-rows // runs_)
    done = 0
    for r in range(runs_):
        run = f"run-2026{1 + r // 28 % 12:02d}{1 + r % 28:02d}T020000Z-{r:06x}"
        count = min(per_run, rows - done)
        for part, start in enumerate(range(done, done + count, _SHARD_ROWS)):
            n = min(_SHARD_ROWS, done + count - start)
            paths = [f"/collection/{i:09d}.jpg" for i in range(start, start + n)]
            features = rng.normal(size=(n, 128)).astype(np.float32)
            zs = rng.uniform(0.49, 0.5, n)
            digests = rng.bytes(32 * n)
            columns = {"path": paths, "sha256": [digests[32 * i:32 * i + 32].hex() for i in range(n)], "source": paths,
                       "source_stamp": [f"size=1000,mtime_ns={i}" for i in range(start, start + n)],
                       "width": np.full(n, 1024, np.int32), "height": np.full(n, 768, np.int32),
                       "decoder": ["cpu"] * n, "profile": [identities["profile"]] * n,
                       "ll_features": pa.FixedSizeListArray.from_arrays(features.ravel(), 128).cast(
                           pa.list_(pa.float32())),
                       "zs_ll": zs, "zs_ll_100": rng.uniform(0, 100, n)}
            table = pa.table({f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in schema}, schema=schema)
            for column, value in identities.items():
                if column != "profile" and value is not None:
                    table = table.set_column(table.schema.get_field_index(column), column, pa.array([value] * n))
            pq.write_table(table, output / "features" / f"{run}-{part:05d}-of-99999.parquet")
        runs.commit(str(output), run, {"started": "2026-01-01T02:00:00Z", "finished": "2026-01-01T03:00:00Z",
                                       "counts": {"images_scored": count}, "argv": ["--input", "/collection/*"]})
        done += count


def _timed(argv: list[str], log: Path) -> dict:
    """Wall seconds and peak resident memory of `grepq ARGV` in a process of its own."""
    start = time.perf_counter()
    with open(log, "w") as f:
        child = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *argv], cwd=ROOT, stdout=f,
                                 stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"grepq {' '.join(argv)} failed:\n{log.read_text()[-3000:]}")
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def incremental(tmp: Path, rows: int, new: int, identities: dict) -> None:
    images = tmp / "new"
    make_corpus(images, new, 512, 384)
    flags = ["--input", str(images / "*.jpg"), "--pathways", "ll", "--device", "cpu", "--incremental"]
    start = time.perf_counter()
    synthetic_output(tmp / "stored", rows, max(1, rows // 1_000_000), identities)
    print(f"built a {rows:,}-row output in {time.perf_counter() - start:.0f} s")
    empty = _timed(["extract", *flags, "--output", str(tmp / "empty")], tmp / "empty.log")
    stored = _timed(["extract", *flags, "--output", str(tmp / "stored")], tmp / "stored.log")
    print(f"incremental extract of {new} new JPEGs into an empty output: {empty['seconds']} s, "
          f"peak RSS {empty['peak_rss_mb']} MB")
    print(f"... into an output of {rows:,} rows: {stored['seconds']} s ({stored['seconds'] / empty['seconds']:.2f}x), "
          f"peak RSS {stored['peak_rss_mb']} MB (+{stored['peak_rss_mb'] - empty['peak_rss_mb']} MB)")


def compaction(tmp: Path, runs_: int, per_run: int, identities: dict) -> None:
    out = tmp / "nights"
    synthetic_output(out, runs_ * per_run, runs_, identities, seed=1)
    labels = tmp / "labels.csv"
    pd.DataFrame({"path": [f"/collection/{i:09d}.jpg" for i in range(0, runs_ * per_run, runs_ * per_run // 50)],
                  "score": np.arange(50.0)}).to_csv(labels, index=False)
    readers = {"score": ["score", "--features", str(out), "--output", str(tmp / "scored"), "--replace"],
               "fit": ["fit", "--features", str(out), "--labels", str(labels), "--output", str(tmp / "m.json")],
               "report": ["report", "--scores", str(tmp / "scored"), "--features", str(out), "--output",
                          str(tmp / "report.html")]}
    before = {name: _timed(argv, tmp / f"{name}.log") for name, argv in readers.items()}
    compacted = _timed(["compact", "--output", str(out)], tmp / "compact.log")
    after = {name: _timed(argv, tmp / f"{name}.log") for name, argv in readers.items()}
    print(f"{runs_} runs of {per_run:,} rows ({len(list((out / 'features').iterdir()))} shards after "
          f"compaction, which took {compacted['seconds']} s):")
    for name in readers:
        print(f"  grepq {name}: {before[name]['seconds']} s before, {after[name]['seconds']} s after")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="stored feature rows (0: skip part 1)")
    parser.add_argument("--new", type=int, default=1000, help="new JPEGs of the incremental run")
    parser.add_argument("--runs", type=int, default=365, help="committed runs of part 2 (0: skip it)")
    parser.add_argument("--rows-per-run", type=int, default=1000, help="rows of each run of part 2")
    args = parser.parse_args(argv)
    identities = Extractor.load(spec_for(pathways="ll", device="cpu")).identities
    with tempfile.TemporaryDirectory(prefix="grepq-nightly-") as tmp:
        if args.rows:
            incremental(Path(tmp), args.rows, args.new, identities)
        if args.runs:
            compaction(Path(tmp), args.runs, args.rows_per_run, identities)


if __name__ == "__main__":
    main()
