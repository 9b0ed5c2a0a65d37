"""Make tests/data/img2dataset: a real img2dataset shard, its metadata Parquet and stats, from local photos.

    python scripts/make_img2dataset_fixture.py --img2dataset /path/to/venv/bin/img2dataset

img2dataset pins pandas<3, which grepq's pins exclude, so it runs from an
environment of its own (`python -m venv v && v/bin/pip install
img2dataset==1.47.0`). It "downloads" eight scikit-image photos from a
throwaway HTTP server on 127.0.0.1, and two URLs that answer 404, so the
metadata holds failed downloads as a real run's does.
"""
from __future__ import annotations

import argparse
import csv
import functools
import http.server
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field", "immunohistochemistry",
          "coins")
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "img2dataset"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img2dataset", required=True, help="the img2dataset command, from its own environment")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        served = Path(tmp) / "served"
        served.mkdir()
        for name in PHOTOS:
            image = Image.fromarray(getattr(data, name)()).convert("RGB")
            image.thumbnail((320, 320))
            image.save(served / f"{name}.jpg", quality=90)
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        urls = Path(tmp) / "urls.csv"
        with open(urls, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["url", "caption"])
            for name in (*PHOTOS[:4], "missing-1", *PHOTOS[4:], "missing-2"):
                writer.writerow([f"{base}/{name}.jpg", f"a photo called {name}"])
        out = Path(tmp) / "out"
        subprocess.run([args.img2dataset, "--url_list", str(urls), "--input_format", "csv", "--url_col", "url",
                        "--caption_col", "caption", "--output_format", "webdataset", "--output_folder", str(out),
                        "--processes_count", "1", "--thread_count", "4", "--image_size", "160",
                        "--resize_mode", "keep_ratio", "--enable_wandb", "False"], check=True)
        server.shutdown()
        shutil.rmtree(OUT, ignore_errors=True)
        OUT.mkdir(parents=True)
        for name in ("00000.tar", "00000.parquet", "00000_stats.json"):
            shutil.copy(out / name, OUT / name)
    print(f"wrote {', '.join(p.name for p in sorted(OUT.iterdir()))} to {OUT}")


if __name__ == "__main__":
    main()
