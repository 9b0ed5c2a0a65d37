"""Hostile inputs against the per-image budgets: time, peak memory of the whole process tree, outcome.

    python benchmarks/robustness.py [--work /tmp/grepq-robustness] [--cases bomb,near_limit,padded,labels,normal]

Each case runs a real `grepq` command in a fresh process (the shipped LL
model, `--pathways ll`) and prints one line: wall seconds, the peak
resident memory of the command and its decode workers together (sampled
every 20 ms from /proc), and what happened to the inputs.

- bomb: progressive JPEGs followed by 10,000 empty scans. At 8000x8000
  the image fits the memory budget and only the time budget (30 s) stops
  it; at 9400x9400 (the size the scan bomb was reported at) the memory
  budget refuses it first. Pillow alone on 1,000 of those scans gives the
  time an unbounded decode would take.
- near_limit: images just under Pillow's pixel limit that take gigabytes
  to decode (a float32 TIFF, a 16-bit PNG, a 16-bit JPEG 2000, a lossless
  RGBA WebP), under the default memory budget (refused before allocation)
  and under a 3 GiB one (decoded: the measured peak against the estimate).
- padded: 40 valid JPEGs padded to 120 MB each (sparse files), through
  `--decode gpu` (JPEG bytes wait for the model's batch; torchvision's
  decoder on the CPU where there is no GPU) and `--decode cpu`.
- labels: `grepq fit` with a 200 MB label file (3.4 million rows, 24 of
  which match the samples' features).
- normal: images/s of the read stage's work on ordinary JPEGs (read, hash,
  decode, cut views: `grepq_core.model.cut.prepare`), in this process; run
  it with PYTHONPATH pointing at another checkout to compare.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NEAR_LIMIT_SIDE = 9450  # 89.3 MP, under Pillow's 89.48 MP decompression-bomb limit


def _tree_rss(root: int) -> int:
    """Resident bytes of process `root` and all its descendants."""
    parents, rss = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(pid)] = int(fields[1])
            rss[int(pid)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError):
            continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(rss.get(pid, 0) for pid in tree)


def run(argv: list[str]) -> tuple[int, float, int, str]:
    """(exit status, wall seconds, peak tree RSS in bytes, stderr) of `grepq ARGV` in a fresh process."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, err = proc.communicate()
    sampler.join()
    return proc.returncode, time.perf_counter() - started, peak[0], err


def outcome(output: Path) -> str:
    """What extract made of its inputs: rows and dead-letter reasons."""
    from transforms.store import read_table

    rows = read_table(str(output), "features").num_rows
    reasons = read_table(str(output), "dead_letters").column("reason").to_pylist()
    dead = ", ".join(f"{reasons.count(r)} {r}" for r in sorted(set(reasons)))
    return f"{rows} scored" + (f", dead-lettered: {dead}" if dead else "")


def line(name: str, code: int, seconds: float, peak: int, what: str) -> None:
    print(f"{name:52s} exit {code}  {seconds:7.1f} s  peak RSS {peak / 2**30:5.2f} GiB  {what}", flush=True)


def extract(work: Path, name: str, files: dict[str, bytes], *flags: str) -> None:
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    out = work / f"{name}{''.join(flags)}.out"
    code, seconds, peak, err = run(["extract", "--input", str(folder / "*"), "--output", str(out), "--pathways", "ll",
                                    *flags])
    line(f"extract {name} {' '.join(flags)}".strip(), code, seconds, peak,
         outcome(out) if code == 0 else err.strip().splitlines()[-1])


def bomb(work: Path) -> None:
    from tests.bad_corpus import scan_bomb_jpeg

    small = scan_bomb_jpeg(8000, 8000, 1_000)
    started = time.perf_counter()
    Image.open(io.BytesIO(small)).load()
    alone = time.perf_counter() - started
    print(f"{'Pillow alone, 8000x8000, 1,000 empty scans':52s} {alone:.1f} s (10,000 scans: about {10 * alone:.0f} s)")
    for side in (8000, 9400):
        data = scan_bomb_jpeg(side, side, 10_000)
        extract(work, f"bomb {side}x{side} ({len(data) >> 10} KiB)", {"bomb.jpg": data})


def _near_limit_images() -> dict[str, bytes]:
    side = NEAR_LIMIT_SIDE
    ramp = np.tile((np.arange(side, dtype=np.uint32) * 65535 // side).astype(np.uint16), (side, 1))
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = ramp >> 8, 200
    images = {"grey16.png": (Image.fromarray(ramp), {}),
              "grey16.jp2": (Image.fromarray(ramp), {}),
              "float32.tif": (Image.fromarray((ramp >> 12).astype(np.float32) / 15),
                              {"compression": "tiff_adobe_deflate"}),
              "rgba_lossless.webp": (Image.fromarray(rgba), {"lossless": True})}
    out = {}
    for name, (image, options) in images.items():
        buffer = io.BytesIO()
        image.save(buffer, name.rsplit(".", 1)[1].replace("jp2", "jpeg2000").replace("tif", "tiff"), **options)
        out[name] = buffer.getvalue()
    return out


def near_limit(work: Path) -> None:
    from grepq_core.images.decode import memory_needed
    from grepq_core.model.cut import VIEW_BYTES_PER_PIXEL

    for name, data in _near_limit_images().items():
        with Image.open(io.BytesIO(data)) as im:
            estimate = memory_needed(im, VIEW_BYTES_PER_PIXEL)
        print(f"{name}: {NEAR_LIMIT_SIDE}x{NEAR_LIMIT_SIDE}, {len(data) / 1024:.1f} KiB, "
              f"estimated {estimate / 2**30:.2f} GiB to decode and cut")
        extract(work, name, {name: data})
        extract(work, name, {name: data}, "--max-image-memory", "3GiB")


def padded(work: Path) -> None:
    folder = work / "padded"
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(ROOT / "samples" / "aero3.jpg").resize((1024, 768))
    for i in range(40):
        buffer = io.BytesIO()
        photo.rotate(i).save(buffer, "JPEG", quality=90)
        path = folder / f"{i:02d}.jpg"
        path.write_bytes(buffer.getvalue())
        os.truncate(path, 120 * 10**6)  # zeros after the end-of-image marker, sparse on disk
    for decode in ("gpu", "cpu"):
        out = work / f"padded_{decode}.out"
        code, seconds, peak, err = run(["extract", "--input", str(folder / "*.jpg"), "--output", str(out),
                                        "--pathways", "ll", "--decode", decode])
        line(f"extract 40 JPEGs padded to 120 MB --decode {decode}", code, seconds, peak,
             outcome(out) if code == 0 else err.strip().splitlines()[-1])


def labels(work: Path) -> None:
    features = work / "samples.out"
    if not features.exists():
        run(["extract", "--input", str(ROOT / "samples" / "*.jpg"), "--output", str(features), "--pathways", "ll"])
    path = work / "labels_200MB.csv"
    with open(ROOT / "samples" / "labels.csv") as f:
        known = f.read().splitlines()[1:25]
    with open(path, "w") as f:
        f.write("path,score\n" + "".join(f"{row}\n" for row in known))
        rows, block = len(known), []
        while f.tell() < 200 * 10**6:
            block = [f"/archive/photos/{i // 10_000:04d}/camera_{i % 7}/{hashlib.md5(str(i).encode()).hexdigest()[:10]}"
                     f".jpg,{i % 97 / 9.7:.2f}\n" for i in range(rows, rows + 100_000)]
            f.write("".join(block))
            rows += len(block)
    code, seconds, peak, err = run(["fit", "--features", str(features), "--labels", str(path),
                                    "--output", str(work / "model.json")])
    what = f"{rows:,} label rows, {path.stat().st_size / 1e6:.0f} MB: " + (
        "fitted on 24" if code == 0 else err.strip().splitlines()[-1])
    line("fit with a 200 MB label file", code, seconds, peak, what)


def normal(work: Path) -> None:
    from grepq_core.images.read import read_and_hash
    from grepq_core.model.cut import prepare
    from grepq_core.model.profiles import spec_for

    spec = spec_for(pathways="ll")
    photo = Image.open(ROOT / "samples" / "aero3.jpg")
    for width, height, count in ((1024, 768, 192), (4000, 3000, 24)):
        folder = work / f"normal_{width}"
        folder.mkdir(exist_ok=True)
        paths = []
        for i in range(count):
            path = folder / f"{i:03d}.jpg"
            photo.rotate(i).resize((width, height)).save(path, quality=90)
            paths.append(path)
        prepare(read_and_hash(str(paths[0]))[0], spec, False)  # start-up (the decode worker), not counted
        started = time.perf_counter()
        for path in paths:
            prepare(read_and_hash(str(path))[0], spec, False)
        rate = count / (time.perf_counter() - started)
        print(f"{'read, decode, cut views: ' + f'{width}x{height} JPEGs':52s} {rate:6.1f} images/s ({count} images)")


CASES = {"bomb": bomb, "near_limit": near_limit, "padded": padded, "labels": labels, "normal": normal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/grepq-robustness", help="folder for the inputs and outputs")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for case in args.cases.split(","):
        CASES[case](work)


if __name__ == "__main__":
    main()
