"""Extract throughput: model-only vs end-to-end DirectRunner, on the same images.

Prints, for one synthetic JPEG corpus (crops of scikit-image photos,
1024x768 by default):

- model-only images/s: `Extractor.encode` on pre-made views (already on the
  model's device), same batch size;
- decode-only images/s (for each `--decode gpu` run): `Extractor.decode`,
  JPEG bytes to views on the model's device;
- end-to-end images/s: `grepq extract` on Beam's FnApiRunner, files to
  Parquet, once per `--decode` mode (`--decode gpu,cpu` runs both), and
  with `--overhead-images N` the marginal rate once the pipeline's fixed
  start-up cost (measured on N images) is taken out; with `--shards N`,
  also from the same images packed into WebDataset shards of N samples
  (each with a caption and a JSON member, as img2dataset writes them);
- each phase's peak GPU memory (torch.cuda.max_memory_allocated), peak
  resident memory of this process (VmHWM, reset per phase where Linux
  allows), GPU utilisation sampled by nvidia-smi where there is one, and
  the ratio of end-to-end to model-only.

Weights are random (same compute as trained ones). `--json PATH` writes
every figure; `--beam-flags` passes Beam flags to the end-to-end runs
(e.g. "--direct_running_mode=multi_threading --direct_num_workers=4").

    python benchmarks/extract_throughput.py --images 128 [--pathways ll,hl] [--batch-size 32] [--decode gpu|cpu|gpu,cpu]

The corpus is a few distinct crops (`--distinct`, encoded once each, in
threads) written many times, each copy with its own JPEG comment so every
file has its own bytes: 4,000 files take seconds, not minutes.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import io
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from grepq_core.images.decode import load_image
from grepq_core.model.cut import image_views
from grepq_core.model.extractor import Extractor
from grepq_core.model.hl_encoder import build_hl_encoder, save_hl_checkpoint
from grepq_core.model.ll_encoder import create_ll_encoder, load_ll_encoder, save_ll_checkpoint
from grepq_core.model.pristine import fit_pristine
from grepq_core.model.profiles import spec_for
from grepq_core.model.settings import EncoderSpec


def with_comment(jpeg: bytes, text: bytes) -> bytes:
    """`jpeg` with a COM segment holding `text` after its APP0 (JFIF) segment, or after SOI."""
    at = 2
    if jpeg[2:4] == b"\xff\xe0":
        at = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:at] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[at:]


def write_shards(paths: list[str], folder: Path, per_shard: int) -> str:
    """The JPEGs at `paths` as WebDataset shards of `per_shard` samples (each with a caption and a JSON
    member, as img2dataset writes them) under `folder`; returns the shards' glob."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(paths), per_shard):
        with wds.TarWriter(str(folder / f"{start // per_shard:05d}.tar"), encoder=False) as writer:
            for i in range(start, min(start + per_shard, len(paths))):
                writer.write({"__key__": f"{i:09d}", "jpg": Path(paths[i]).read_bytes(), "txt": b"a caption",
                              "json": json.dumps({"i": i}).encode()})
    return str(folder / "*.tar")


def _crop_jpeg(source: np.ndarray, width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(source).convert("RGB")
    s = rng.uniform(1.05, 1.4) * max(width / im.width, height / im.height)
    im = im.resize((int(im.width * s), int(im.height * s)), Image.BICUBIC)
    x, y = rng.integers(0, im.width - width + 1), rng.integers(0, im.height - height + 1)
    buffer = io.BytesIO()
    im.crop((x, y, x + width, y + height)).save(buffer, format="JPEG", quality=int(rng.integers(75, 96)))
    return buffer.getvalue()


def make_corpus(folder: Path, n: int, width: int, height: int, distinct: int = 64) -> list[str]:
    """`n` JPEGs of `width` x `height`: `distinct` crops, each file a copy with its own comment."""
    from skimage import data

    sources = [getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")]
    distinct = max(1, min(n, distinct))
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # Pillow releases the GIL
        crops = list(pool.map(lambda i: _crop_jpeg(sources[i % len(sources)], width, height, i), range(distinct)))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:05d}.jpg"
        path.write_bytes(with_comment(crops[i % distinct], b"grepq-bench %d" % i))
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


class GpuSampler:
    """`nvidia-smi` utilisation and memory readings in the background (nothing where there is none)."""

    def __init__(self, interval_ms: int = 200):
        self.samples: list[tuple[float, float, float]] = []  # (perf_counter, util %, MiB used)
        self._proc = None
        self._thread = None
        if shutil.which("nvidia-smi") is None:
            return
        try:
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 "-lms", str(interval_ms), "-i", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self._proc.stdout:
            try:
                util, mem = (float(v) for v in line.split(","))
            except ValueError:
                continue
            self.samples.append((time.perf_counter(), util, mem))

    def window(self, start: float, end: float) -> dict | None:
        """Utilisation (%) and memory used (MiB) between two perf_counter times."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if not inside:
            return None
        util = np.array([s[1] for s in inside])
        return {"samples": len(inside), "util_mean_pct": round(float(util.mean()), 1),
                "util_median_pct": float(np.median(util)), "util_max_pct": float(util.max()),
                "memory_used_max_mib": max(s[2] for s in inside)}

    def close(self):
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)


def _rss_hwm_mib() -> float:
    """Peak resident memory of this process since the last reset (VmHWM), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_rss_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Phase:
    """Wall time, peak GPU memory, peak RSS and GPU utilisation of one phase; `.result` after the block."""

    def __init__(self, name: str, sampler: GpuSampler, log=print):
        self.name, self.sampler, self.log, self.result = name, sampler, log, {}

    def __enter__(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.rss_reset = _reset_rss_hwm()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        end = time.perf_counter()
        self.result.update(seconds=round(end - self.start, 3), rss_peak_mib=round(_rss_hwm_mib()),
                           rss_peak_is_phase=self.rss_reset)
        if torch.cuda.is_available():
            self.result.update(gpu_max_allocated_mib=round(torch.cuda.max_memory_allocated() / 2**20),
                               gpu_max_reserved_mib=round(torch.cuda.max_memory_reserved() / 2**20))
        self.result["nvidia_smi"] = self.sampler.window(self.start, end)
        self.log(f"[timing] throughput/{self.name}: {end - self.start:.1f} s")
        return False


def _on_device(views, device: torch.device):
    return dataclasses.replace(views, tensors={k: torch.as_tensor(v).to(device) for k, v in views.tensors.items()})


def model_only(spec: EncoderSpec, paths: list[str], repeats: int) -> float:
    """Images/s of the encoders (and zero-shot patches) on one batch of views made beforehand, on the model's device."""
    model = Extractor.load(spec)
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # torch and Pillow release the GIL
        items = list(pool.map(lambda p: image_views(load_image(p), spec), paths[: spec.batch_size]))
    items = [_on_device(v, model.device) for v in items]
    model.encode(items)  # warm-up
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        model.encode(items)
    rate = repeats * len(items) / (time.perf_counter() - start)
    del model, items
    return rate


def decode_only(spec: EncoderSpec, paths: list[str]) -> dict:
    """Images/s of `Extractor.decode` (JPEG bytes to views on the model's device), all images once."""
    model = Extractor.load(spec)
    datas = [Path(p).read_bytes() for p in paths]
    size = spec.batch_size
    model.decode(datas[:size])  # warm-up
    decoders: dict[str, int] = {}
    errors = 0
    start = time.perf_counter()
    for i in range(0, len(datas), size):
        for v in model.decode(datas[i:i + size]):
            if hasattr(v, "decoder"):
                decoders[v.decoder] = decoders.get(v.decoder, 0) + 1
            else:
                errors += 1
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images_per_s": round(len(datas) / seconds, 2), "images": len(datas), "decoders": decoders,
            "errors": errors}


def end_to_end(flags: list[str], inputs: str, out: Path, n: int) -> dict:
    """Wall-clock images/s of `grepq extract` over `inputs` (a pattern of n images), and what it wrote."""
    from pipelines import extract
    from transforms.store import read_table

    start = time.perf_counter()
    extract.run([f"--input={inputs}", "--output", str(out), *flags])
    seconds = time.perf_counter() - start
    rows = read_table(str(out), "features", columns=["decoder"]).column("decoder").to_pylist()
    try:
        dead = read_table(str(out), "dead_letters").num_rows
    except Exception:  # noqa: BLE001 - no dead-letter shard at all
        dead = 0
    decoders = {d: rows.count(d) for d in sorted(set(rows))}
    return {"images_per_s": round(n / seconds, 2), "images": n, "seconds": round(seconds, 3), "rows": len(rows),
            "dead_letters": dead, "decoders": decoders}


def _small_corpus(corpus: Path, paths: list[str], n: int) -> Path:
    small = corpus.parent / f"{corpus.name}_first{n}"
    if small.exists() and len(list(small.glob("*.jpg"))) == n:
        return small
    shutil.rmtree(small, ignore_errors=True)
    small.mkdir(parents=True)
    for p in paths[:n]:
        try:
            os.link(p, small / Path(p).name)
        except OSError:
            shutil.copy(p, small / Path(p).name)
    return small


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--distinct", type=int, default=64, help="distinct crops in the corpus (the rest are copies)")
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--pathways", default="ll,hl")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-patches", default="32")
    parser.add_argument("--ll-arch", default="resnet18")
    parser.add_argument("--hl-model", default="RN50", help="open_clip model name or model-config JSON path")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--decode", default="auto",
                        help="where JPEGs are decoded in the end-to-end runs: auto, gpu, cpu, or a comma list "
                        "(gpu,cpu runs both; see grepq extract --help)")
    parser.add_argument("--beam-flags", default="", help="Beam flags for the end-to-end runs, one string")
    parser.add_argument("--overhead-images", type=int, default=0,
                        help="also run end-to-end on this many images, to take the start-up cost out")
    parser.add_argument("--shards", type=int, default=0,
                        help="also run end-to-end from the corpus as WebDataset shards of this many samples")
    parser.add_argument("--workdir", default=None, help="keep the corpus and outputs here")
    parser.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    decodes = [d.strip() for d in args.decode.split(",") if d.strip()]
    if not decodes or any(d not in ("auto", "gpu", "cpu") for d in decodes):
        parser.error(f"--decode: auto, gpu, cpu or a comma list of them, got {args.decode!r}")

    sampler = GpuSampler()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="grepq-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.size.split("x"))
    report: dict = {"torch": torch.__version__, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    with Phase("corpus", sampler) as phase:
        corpus = work / f"corpus_{args.images}_{args.size}"
        paths = sorted(str(p) for p in corpus.glob("*.jpg")) if corpus.exists() else []
        if len(paths) != args.images:
            shutil.rmtree(corpus, ignore_errors=True)
            paths = make_corpus(corpus, args.images, width, height, args.distinct)
    mean_kb = sum(os.path.getsize(p) for p in paths) / len(paths) / 1024
    report["corpus"] = {"images": len(paths), "size": args.size, "distinct": min(args.distinct, len(paths)),
                        "mean_kb": round(mean_kb, 1), "seconds": phase.result["seconds"]}
    with Phase("weights", sampler):
        weights = random_weights(work, args.ll_arch, args.hl_model)
    max_patches = None if args.max_patches == "all" else int(args.max_patches)
    spec = spec_for(pathways=args.pathways, ll_weights=weights["ll"], pristine=weights["pristine"],
                    hl_model=args.hl_model, hl_weights=weights["hl"], device=args.device,
                    batch_size=args.batch_size, max_patches=max_patches)
    device = Extractor.load(dataclasses.replace(spec, pathways=())).device
    report["config"] = {"pathways": args.pathways, "ll_arch": args.ll_arch, "hl_model": args.hl_model,
                        "batch_size": args.batch_size, "max_patches": args.max_patches, "device": str(device),
                        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                        "beam_flags": args.beam_flags, "shards": args.shards}
    flags = ["--pathways", args.pathways, "--ll-weights", weights["ll"], "--pristine", weights["pristine"],
             "--hl-model", args.hl_model, "--hl-weights", weights["hl"], "--device", args.device,
             "--batch-size", str(args.batch_size), "--max-patches", args.max_patches, *shlex.split(args.beam_flags)]

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1, default=str))

    def attempt(name, fn):
        """fn()'s result, or None with the error recorded: one failing phase leaves the others' figures."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - a benchmark reports failures, it does not hide the rest
            import traceback

            report.setdefault("errors", {})[name] = traceback.format_exc(limit=8)[-3000:]
            print(f"{name} FAILED: {type(e).__name__}: {e}", flush=True)
            return None
        finally:
            save()

    repeats = max(1, args.images // args.batch_size)
    report["decode_only"], report["end_to_end"] = {}, {}

    def run_model_only():
        with Phase("model_only", sampler) as phase:
            rate = model_only(spec, paths, repeats)
        report["model_only"] = {"images_per_s": round(rate, 2), "images": repeats * min(args.batch_size, len(paths)),
                                **phase.result}
        return rate

    model_rate = attempt("model_only", run_model_only)

    def run_decode_only(decode):
        with Phase(f"decode_only_{decode}", sampler) as phase:
            result = decode_only(dataclasses.replace(spec, decode=decode), paths)
        report["decode_only"][decode] = {**result, **phase.result}

    def run_end_to_end(decode, inputs=f"{corpus}/*.jpg", key=None):
        key = key or decode
        with Phase(f"end_to_end_{key}", sampler) as phase:
            out = Path(tempfile.mkdtemp(prefix=f"out-{key}-", dir=work))
            result = end_to_end([*flags, "--decode", decode], inputs, out, len(paths))
        result.update(phase.result, ratio_to_model_only=round(result["images_per_s"] / model_rate, 4)
                      if model_rate else None)
        report["end_to_end"][key] = result
        if 0 < args.overhead_images < len(paths) and key == decode:
            with Phase(f"end_to_end_{decode}_first{args.overhead_images}", sampler) as phase:
                small = _small_corpus(corpus, paths, args.overhead_images)
                out = Path(tempfile.mkdtemp(prefix=f"out-{decode}-small-", dir=work))
                first = end_to_end([*flags, "--decode", decode], f"{small}/*.jpg", out, args.overhead_images)
            extra = result["seconds"] - first["seconds"]
            result["overhead_run"] = {**first, **phase.result}
            result["marginal_images_per_s"] = (round((len(paths) - args.overhead_images) / extra, 2)
                                               if extra > 0 else None)

    for decode in decodes:
        if decode == "gpu" or (decode == "auto" and device.type == "cuda"):
            attempt(f"decode_only_{decode}", lambda: run_decode_only(decode))
        attempt(f"end_to_end_{decode}", lambda: run_end_to_end(decode))
    if args.shards:  # last, so that a deadline cuts these before the loose files
        shards = attempt("write_shards", lambda: write_shards(paths, work / f"shards_{len(paths)}", args.shards))
        for decode in decodes if shards else ():
            attempt(f"end_to_end_{decode}_shards", lambda: run_end_to_end(decode, shards, f"{decode}_shards"))
    sampler.close()
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    save()

    print(f"corpus: {len(paths)} JPEGs {args.size} ({mean_kb:.0f} KB each, {report['corpus']['distinct']} distinct); "
          f"pathways {args.pathways}; batch {args.batch_size}; max patches {args.max_patches}; device {device}; "
          f"torch {torch.__version__}; torch threads {torch.get_num_threads()}; cores {os.cpu_count()}")
    print(f"model-only   {model_rate or float('nan'):8.2f} images/s")
    for decode, r in report["decode_only"].items():
        print(f"decode-only  {r['images_per_s']:8.2f} images/s "
              f"(decode {decode}: {r['decoders']}, {r['errors']} errors)")
    for decode, r in report["end_to_end"].items():
        marginal = (f", {r['marginal_images_per_s']:.2f} without start-up"
                    if r.get("marginal_images_per_s") else "")
        smi = r["nvidia_smi"]
        print(f"end-to-end   {r['images_per_s']:8.2f} images/s (decode {decode}{marginal}; ratio "
              f"{r['ratio_to_model_only'] or float('nan'):.1%}; {r['rows']} rows, {r['dead_letters']} dead; "
              f"decoders {r['decoders']}; peak RSS {r['rss_peak_mib']} MiB"
              + (f"; GPU peak {r['gpu_max_allocated_mib']} MiB" if "gpu_max_allocated_mib" in r else "")
              + (f"; GPU util mean {smi['util_mean_pct']}% max {smi['util_max_pct']}%" if smi else "") + ")")
    for name in report.get("errors", {}):
        print(f"FAILED       {name} (traceback in the JSON)")
    print(f"peak RSS     {report['peak_rss_mib']:8.0f} MiB")
    return report


if __name__ == "__main__":
    raise SystemExit(1 if main().get("errors") else 0)
