"""Extracting from WebDataset shards and Parquet files against the same images as loose files.

    python benchmarks/collections_throughput.py [--images 300] [--big-shard-mb 1024]

Writes one synthetic JPEG corpus (crops of scikit-image photos, 1024x768)
three ways: loose files, WebDataset shards of 100 samples (each image with a
caption and a JSON member, as img2dataset writes them) and one Parquet file
in Hugging Face's {bytes, path} layout. Then runs `grepq extract --pathways
ll` (the shipped LL model, this machine's CPU, Beam's in-process runner) on
each, in a fresh process, and prints images/s and the process's peak
resident memory. With `--big-shard-mb`, also one shard of about that many MB
whose samples carry a large binary member beside a small JPEG: the peak
memory of extracting it shows whether a shard is streamed or held whole.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_throughput import make_corpus, write_shards  # noqa: E402 - a sibling benchmark's corpus

ROOT = Path(__file__).resolve().parent.parent


def _extract(inputs: list[str], output: Path) -> dict:
    """Wall seconds, images read and peak resident memory (its own rusage) of `grepq extract` on `inputs`,
    in a process of its own."""
    argv = [sys.executable, "-m", "pipelines.cli", "extract", *[f for i in inputs for f in ("--input", i)],
            "--output", str(output), "--pathways", "ll", "--device", "cpu"]
    log = output.with_suffix(".log")
    start = time.perf_counter()
    with open(log, "w") as f:
        child = subprocess.Popen(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    text = log.read_text()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(argv)} failed:\n{text[-2000:]}")
    line = next(line for line in text.splitlines() if line.startswith("extract:"))
    images = int(line.split()[1])
    return {"seconds": round(seconds, 1), "images": images, "images_per_s": round(images / seconds, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="images in the corpus")
    parser.add_argument("--big-shard-mb", type=int, default=1024, help="size of the big shard (0: none)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="grepq-collections-") as tmp:
        tmp = Path(tmp)
        paths = make_corpus(tmp / "loose", args.images, 1024, 768)
        images = [Path(p).read_bytes() for p in paths]
        shards = write_shards(paths, tmp / "shards", 100)
        cells = pa.array([{"bytes": b, "path": Path(p).name} for b, p in zip(images, paths)],
                         type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        pq.write_table(pa.table({"image": cells}), tmp / "train.parquet", row_group_size=100)
        runs = {"loose files": [str(tmp / "loose" / "*.jpg")], "WebDataset shards": [shards],
                "Parquet": [str(tmp / "train.parquet")]}
        if args.big_shard_mb:
            blob = os.urandom(5 * 2**20)
            count = max(1, args.big_shard_mb // 5)
            with wds.TarWriter(str(tmp / "big.tar"), encoder=False) as writer:
                for i in range(count):
                    writer.write({"__key__": f"{i:09d}", "jpg": images[i % len(images)], "bin": blob})
            runs[f"one {os.path.getsize(tmp / 'big.tar') / 2**30:.2f} GB shard ({count} samples)"] = [
                str(tmp / "big.tar")]
        for name, inputs in runs.items():
            figures[name] = result = _extract(inputs, tmp / f"out-{len(figures)}")
            print(f"{name}: {result['images_per_s']} images/s ({result['images']} images in {result['seconds']} s, "
                  f"start-up included), peak RSS {result['peak_rss_mb']} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
