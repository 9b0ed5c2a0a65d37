"""Extract throughput: model-only vs end-to-end DirectRunner, on the same images.

Prints, for one synthetic JPEG corpus (like shared/perf_anchor.py: crops of
scikit-image photos, 1024x768 by default):

- model-only images/s: `Extractor.extract` on pre-made views, same batch size;
- end-to-end images/s: `grepq extract` on DirectRunner, files to Parquet;
- their ratio, and the peak resident memory of this process.

Weights are random (same compute as trained ones) unless given.

    python benchmarks/extract_throughput.py --images 128 [--pathways ll,hl] [--batch-size 32] [--decode gpu|cpu]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from grepq_core.extractor import EncoderSpec, Extractor, ViewConfig, parse_pathways, prepare_image
from grepq_core.hl_encoder import build_hl_encoder, save_hl_checkpoint
from grepq_core.imageio import load_image
from grepq_core.ll_encoder import create_ll_encoder, load_ll_encoder, save_ll_checkpoint
from grepq_core.pristine import fit_pristine
from pipelines import extract


def make_corpus(folder: Path, n: int, width: int, height: int) -> list[str]:
    from skimage import data

    sources = [getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        im = Image.fromarray(sources[i % len(sources)]).convert("RGB")
        s = rng.uniform(1.05, 1.4) * max(width / im.width, height / im.height)
        im = im.resize((int(im.width * s), int(im.height * s)), Image.BICUBIC)
        x, y = rng.integers(0, im.width - width + 1), rng.integers(0, im.height - height + 1)
        path = folder / f"{i:05d}.jpg"
        im.crop((x, y, x + width, y + height)).save(path, quality=int(rng.integers(75, 96)))
        paths.append(str(path))
    return paths


def random_weights(folder: Path, arch: str, hl_model: str) -> dict:
    """Checkpoints with random weights, and a pristine model matching the LL one."""
    torch.manual_seed(0)
    ll_path = str(folder / "ll.pt")
    save_ll_checkpoint(create_ll_encoder(arch), ll_path, arch)
    _, ll_id = load_ll_encoder(ll_path)
    pristine_path = str(folder / "pristine.npz")
    fit_pristine(np.random.default_rng(0).normal(size=(256, 128)), ll_id).save(pristine_path)
    hl, _ = build_hl_encoder(hl_model, None)
    hl_path = str(folder / "hl.pt")
    save_hl_checkpoint(hl, hl_path, hl_model)
    return {"ll": ll_path, "pristine": pristine_path, "hl": hl_path}


def model_only(spec: EncoderSpec, paths: list[str], repeats: int) -> float:
    """Images/s of the encoders (and zero-shot patches) on views made beforehand."""
    model = Extractor.load(spec)
    items = [prepare_image(load_image(p), spec, p) for p in paths[: spec.batch_size]]
    model.extract(items)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        model.extract(items)
    return repeats * len(items) / (time.perf_counter() - start)


def end_to_end(flags: list[str], corpus: Path, out: Path, n: int) -> float:
    start = time.perf_counter()
    extract.run([f"--input={corpus}/*.jpg", "--output", str(out), *flags])
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--pathways", default="ll,hl")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-patches", default="32")
    parser.add_argument("--ll-arch", default="resnet18")
    parser.add_argument("--hl-model", default="RN50")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--decode", default="auto", choices=("auto", "gpu", "cpu"),
                        help="where JPEGs are decoded in the end-to-end run (see grepq extract --help)")
    parser.add_argument("--workdir", default=None, help="keep the corpus and outputs here")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="grepq-bench-"))
    width, height = (int(v) for v in args.size.split("x"))
    corpus = work / f"corpus_{args.images}_{args.size}"
    paths = sorted(str(p) for p in corpus.glob("*.jpg")) if corpus.exists() else []
    if len(paths) != args.images:
        paths = make_corpus(corpus, args.images, width, height)
    weights = random_weights(work, args.ll_arch, args.hl_model)
    max_patches = None if args.max_patches == "all" else int(args.max_patches)
    spec = EncoderSpec(pathways=parse_pathways(args.pathways), ll_weights=weights["ll"], pristine=weights["pristine"],
                       hl_model=args.hl_model, hl_weights=weights["hl"], device=args.device,
                       batch_size=args.batch_size, views=ViewConfig(max_patches=max_patches))
    flags = ["--pathways", args.pathways, "--ll-weights", weights["ll"], "--pristine", weights["pristine"],
             "--hl-model", args.hl_model, "--hl-weights", weights["hl"], "--device", args.device,
             "--batch-size", str(args.batch_size), "--max-patches", args.max_patches, "--decode", args.decode]

    repeats = max(1, args.images // args.batch_size)
    model_rate = model_only(spec, paths, repeats)
    out = Path(tempfile.mkdtemp(prefix="out-", dir=work))
    e2e_rate = end_to_end(flags, corpus, out, len(paths))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    device = Extractor.load(dataclasses.replace(spec, pathways=())).device
    print(f"corpus: {len(paths)} JPEGs {args.size}; pathways {args.pathways}; batch {args.batch_size}; "
          f"max patches {args.max_patches}; device {device}; decode {args.decode}; "
          f"torch threads {torch.get_num_threads()}; "
          f"cores {os.cpu_count()}")
    print(f"model-only   {model_rate:8.2f} images/s")
    print(f"end-to-end   {e2e_rate:8.2f} images/s (DirectRunner, files to Parquet)")
    print(f"ratio        {e2e_rate / model_rate:8.1%}")
    print(f"peak RSS     {peak_mib:8.0f} MiB")


if __name__ == "__main__":
    main()
