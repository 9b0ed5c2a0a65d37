"""One command that checks grepq's CUDA path on a GPU machine and writes one JSON and a log.

Stages, each timed (a ``[timing]`` line per stage and sub-stage), each in
its own process so that a crash or a hang in one leaves the others' results:

1. install: the wheels carried in ``.whl/`` (benchmarks/fetch_gpu_wheels.sh)
   into ``/tmp/site``, with ``--no-deps``: apache-beam and open_clip and what
   the GPU image lacks of their needs; torch and torchvision stay the
   image's own (2.11 / 0.26 there, against the 2.14 / 0.29 pinned here);
2. env: versions (torch's first), the GPU, and whether every module grepq's
   extract path imports can be imported;
3. cuda_tests: the tests parametrized on ``tests/conftest.py``'s DEVICES,
   CUDA case only (``pytest -k cuda``);
4. parity: on `--parity-images` JPEGs of mixed sizes, chroma subsampling,
   progressive, greyscale and EXIF-rotated, the views and features of the
   device path (nvJPEG, views cut on the GPU, bf16 autocast, channels_last)
   against the CPU path (Pillow, views cut on the CPU, fp32), within
   `TOLERANCES`; a PNG, a CMYK JPEG, a truncated, a garbage and a corrupt JPEG
   mixed into device batches (`Extractor.decode`) and into a `grepq extract
   --decode gpu` run, which must fall back to the CPU decoder or be
   dead-lettered as the CPU path does; four threads sharing one model (a
   CUDA stream each) give the rows one thread gives;
5. throughput: benchmarks/extract_throughput.py on `--throughput-images`
   JPEGs of 1024x768, both pathways, model-only, decode-only and end-to-end
   with ``--decode gpu`` and ``--decode cpu``, each from loose files and
   from the same JPEGs as WebDataset shards (`--shard-samples`), with peak
   GPU memory, peak RSS and nvidia-smi utilisation.

Everything lands in OUT/gpu_check.json (rewritten after every stage) and
OUT/gpu_check.log; the last lines printed are a summary. ``--smoke`` runs
stages 2 (importing torch only), 4 and 5 on the CPU with tiny models and a
handful of images (tests/test_gpu_check.py), so the script cannot rot
unnoticed.

    bash benchmarks/gpu_check.sh [--smoke] [--out DIR]

benchmarks/README.md ("GPU check") gives the device call and what to report.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"

# Device path against CPU path. Pixel levels are 0..255; "p99" is the 99th
# percentile of |difference| over one image's pixels, "mean" its mean; the
# worst image counts. Feature rows: cosine and relative L2 per row, worst row.
# Zero-shot scores (zs_ll in (0, 0.5], zs_hl in (0, 1), zs_combined their
# sum): the largest |difference| over the images. Their Spearman correlation
# and |difference| over the scores' spread across images are recorded, not
# judged: with random weights every image gets nearly the same zs_hl (std
# about 0.001; bf16 autocast on the CPU moved it by 0.0003, cosines of the
# feature rows stayed above 0.99998), so its ranks are noise either way.
TOLERANCES = {
    "decode_mean": 1.5,        # nvJPEG vs Pillow (libjpeg-turbo): IDCT and chroma upsampling differ
    "decode_p99": 8,
    "views_mean": 1.5,         # the views cut from those pixels (resizes on the GPU round within 1 level)
    "views_p99": 8,
    "bf16_cosine_min": 0.999,  # same CPU views encoded on the GPU in bf16 vs on the CPU in fp32
    "bf16_rel_l2_max": 0.03,
    "total_cosine_min": 0.995,  # device path (its own views, bf16) vs CPU path
    "total_rel_l2_max": 0.06,
    "zero_shot_abs_max": 0.005,
    "threads_cosine_min": 0.9999,  # four feeding threads vs one
}

SPECIALS = ("rgb.png", "cmyk.jpg", "truncated.jpg", "garbage.jpg", "corrupt.jpg")
# What each must become on the device path: "cpu": views with the CPU path's
# pixels (Pillow's fallback, or a device decoder that reads it right: the
# CPU's libjpeg-turbo reads CMYK); "error": an ImageError (a dead letter);
# "as_cpu": what the CPU path does (views or error). In `grepq extract` PNG and
# CMYK never reach the device decoder (`device_decodable`): decoder "cpu" there.
EXPECTED = {"rgb.png": "cpu", "cmyk.jpg": "cpu", "truncated.jpg": "error", "garbage.jpg": "error",
            "corrupt.jpg": "as_cpu"}

TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


# --------------------------------------------------------------------------- orchestration (stdlib only)

class Log:
    """Lines to stdout and to OUT/gpu_check.log."""

    def __init__(self, path: Path):
        self._file = open(path, "a", buffering=1)
        self._lock = threading.Lock()

    def __call__(self, line: str = "") -> None:
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            self._file.write(line + "\n")


def _run(cmd: list[str], log: Log, env: dict, timeout: float, cwd: Path = ROOT) -> tuple[int, float, list[str]]:
    """(exit code, seconds, output lines) of `cmd`, its output streamed into the log; killed at `timeout`."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", process_group=0)
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(max(1.0, timeout), kill)
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            log("  | " + line)
        proc.wait()
    finally:
        timer.cancel()
    rc = 124 if timed_out.is_set() else proc.returncode
    return rc, time.perf_counter() - start, lines


ENV_MODULES = ["torch", "torchvision.io", "apache_beam", "apache_beam.ml.inference.base", "open_clip", "piq",
               "skimage", "grepq_core.model.extractor", "grepq_core.training.fsim", "transforms.inference",
               "transforms.read",
               "pipelines.extract"]
ENV_SNIPPET = r"""
import importlib, importlib.metadata as md, json, sys
info = {"python": sys.version.split()[0], "executable": sys.executable, "versions": {}, "imports": {}}
for dist in ("torch", "torchvision", "numpy", "pillow", "pyarrow", "pandas", "scipy", "scikit-image", "scikit-learn",
             "apache-beam", "open_clip_torch", "timm", "huggingface_hub", "safetensors", "ftfy", "regex", "piq",
             "protobuf", "grpcio", "fsspec", "pytest", "pytest-timeout"):
    try:
        info["versions"][dist] = md.version(dist)
    except md.PackageNotFoundError:
        info["versions"][dist] = None
for mod in sys.argv[1:]:
    try:
        m = importlib.import_module(mod)
        info["imports"][mod] = getattr(m, "__file__", None) or "ok"
    except Exception as e:
        info["imports"][mod] = f"FAILED {type(e).__name__}: {e}"
import torch
info["torch"] = torch.__version__
info["torch_cuda"] = torch.version.cuda
info["cuda_available"] = torch.cuda.is_available()
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_gib": round(p.total_memory / 2**30, 1),
                   "multiprocessors": p.multi_processor_count, "bf16": torch.cuda.is_bf16_supported(),
                   "cudnn": torch.backends.cudnn.version()}
info["cores"] = __import__("os").cpu_count()
print("ENV_JSON " + json.dumps(info))
"""


def _pytest_summary(lines: list[str]) -> dict:
    counts = {}
    for line in lines[-5:]:
        for n, what in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)", line):
            counts[what.rstrip("s") if what.startswith("error") else what] = int(n)
    return counts


def _cuda_test_files() -> list[str]:
    """The test files that parametrize on conftest's DEVICES (their CUDA case is selected with -k cuda)."""
    uses = re.compile(r"^from (?:tests\.)?conftest import [^\n]*\bDEVICES\b", re.M)
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if uses.search(p.read_text(errors="replace")))


def orchestrate(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if not args.keep_work:  # only what this script writes there
        for name in ("parity", "throughput"):
            shutil.rmtree(work / name, ignore_errors=True)
    for name in ("parity.json", "throughput.json"):
        (work / name).unlink(missing_ok=True)
    (out / "gpu_check.log").unlink(missing_ok=True)
    log = Log(out / "gpu_check.log")
    report: dict = {"smoke": args.smoke, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "argv": sys.argv[1:], "tolerances": TOLERANCES, "stages": {}, "timings_s": {}}
    json_path = out / "gpu_check.json"

    def save():
        json_path.write_text(json.dumps(report, indent=1, default=str))

    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    paths = [str(ROOT)]
    if not args.smoke:
        paths.insert(0, args.site)
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if args.smoke:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # a busy shared CPU: idle OpenMP threads sleep
    py = sys.executable
    device = "cpu" if args.smoke else args.device
    model_flags = ["--ll-arch", args.ll_arch, "--hl-model", args.hl_model]
    if args.smoke:
        tiny = work / "grepq-tiny-rn.json"
        tiny.write_text(json.dumps(TINY_CLIP))
        model_flags = ["--ll-arch", "resnet18-w8", "--hl-model", str(tiny)]

    def remaining() -> float:
        return args.deadline - (time.perf_counter() - t0)

    def stage(name: str, cmd: list[str], timeout: float, parse=None) -> dict:
        budget = min(timeout, remaining())
        if budget < 10:
            result = {"status": "skipped", "why": f"deadline: {remaining():.0f} s left"}
            log(f"[timing] {name}: skipped ({result['why']})")
        else:
            log(f"== {name}: {' '.join(c if len(c) < 200 else c[:40].strip() + '...' for c in cmd)}")
            rc, seconds, lines = _run(cmd, log, env, budget)
            result = {"status": "ok" if rc == 0 else ("timeout" if rc == 124 else "failed"), "rc": rc,
                      "seconds": round(seconds, 1)}
            if parse:
                try:
                    result.update(parse(lines))
                except Exception as e:  # noqa: BLE001 - a parse failure is a finding, not a crash
                    result["parse_error"] = f"{type(e).__name__}: {e}"
            if rc != 0:
                result["tail"] = lines[-15:]
            report["timings_s"][name] = round(seconds, 1)
            log(f"[timing] {name}: {seconds:.1f} s ({result['status']}; {time.perf_counter() - t0:.0f} s since start)")
        report["stages"][name] = result
        save()
        return result

    # 1. install
    if args.smoke:
        report["stages"]["install"] = {"status": "skipped", "why": "smoke"}
    else:
        wheels = sorted(str(p) for p in (ROOT / args.wheels).glob("*.whl"))
        if not wheels:
            report["stages"]["install"] = {"status": "failed", "why": f"no wheels in {args.wheels}/"}
            log(f"install: no wheels in {args.wheels}/ (run bash benchmarks/fetch_gpu_wheels.sh here first)")
        else:
            r = stage("install", [py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                  "--no-cache-dir", "--upgrade", "--target", args.site, *wheels], 120)
            r["wheels"] = [Path(w).name for w in wheels]
    # 2. env
    def parse_env(lines):
        found = [line for line in lines if line.startswith("ENV_JSON ")]
        info = json.loads(found[-1][len("ENV_JSON "):])
        report["env"] = info
        failed = {m: v for m, v in info["imports"].items() if str(v).startswith("FAILED")}
        log(f"torch {info['torch']} (CUDA {info['torch_cuda']}), cuda available: {info['cuda_available']}, "
            f"GPU: {info.get('gpu')}")
        return {"import_failures": failed}

    # what grepq's extract path and the CUDA tests import (the smoke imports them in the later stages anyway)
    modules = ["torch"] if args.smoke else ENV_MODULES
    stage("env", [py, "-c", ENV_SNIPPET, *modules], 90, parse_env)
    if shutil.which("nvidia-smi"):
        try:
            report["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            report["nvidia_smi"] = f"failed: {e}"
    # 3. cuda tests
    if args.smoke:
        report["stages"]["cuda_tests"] = {"status": "skipped", "why": "smoke (CPU)"}
    else:
        files = _cuda_test_files()
        stage("cuda_tests", [py, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "-k", "cuda", *files], 150,
              lambda lines: {"files": files, "counts": _pytest_summary(lines)})
    # 4. parity
    parity_json = work / "parity.json"

    def load_part(path: Path, key: str):
        def parse(lines):
            if path.exists():
                report[key] = json.loads(path.read_text())
            return {}
        return parse

    stage("parity", [py, str(BENCH / "gpu_check.py"), "--stage", "parity", "--device", device,
                     "--images", str(args.parity_images), "--batch-size", str(args.parity_batch_size),
                     "--work", str(work / "parity"), "--json", str(parity_json), *model_flags], 200,
          load_part(parity_json, "parity"))
    # 5. throughput
    throughput_json = work / "throughput.json"
    beam = f"--direct_running_mode=multi_threading --direct_num_workers={args.beam_workers}"
    stage("throughput", [py, str(BENCH / "extract_throughput.py"), "--images", str(args.throughput_images),
                         "--batch-size", str(args.batch_size), "--device", device, "--decode", "gpu,cpu",
                         "--beam-flags", beam, "--overhead-images", str(args.overhead_images),
                         "--shards", str(args.shard_samples),
                         "--workdir", str(work / "throughput"), "--json", str(throughput_json), *model_flags], 300,
          load_part(throughput_json, "throughput"))

    report["total_s"] = round(time.perf_counter() - t0, 1)
    report["checks"] = checks(report)
    save()
    summary(report, log)
    log(f"wrote {json_path} and {out / 'gpu_check.log'}")
    failed_stages = [n for n, s in report["stages"].items() if s.get("status") not in ("ok", "skipped")]
    return 1 if failed_stages or any(c["ok"] is False for c in report["checks"]) else 0


def checks(report: dict) -> list[dict]:
    """Every pass/fail judgement, flat: name, value, limit, ok (None: not measured)."""
    out = []
    p = report.get("parity") or {}

    def add(name, value, limit, ok):
        out.append({"name": name, "value": value, "limit": limit, "ok": ok})

    env = report.get("env") or {}
    add("imports", sorted(report["stages"].get("env", {}).get("import_failures", {})) or "all", "all",
        not report["stages"].get("env", {}).get("import_failures") if env else None)
    ct = report["stages"].get("cuda_tests", {})
    if ct.get("status") != "skipped":
        counts = ct.get("counts", {})
        add("cuda_tests", counts, "passed > 0, none failed",
            bool(counts.get("passed")) and not counts.get("failed") and not counts.get("error") and ct.get("rc") == 0)
    parity_checks = p.get("checks")
    if p and parity_checks is None:  # the parity process died (or was stopped) part way: judge what it wrote
        add("parity.completed", report["stages"].get("parity", {}).get("status"), "ok", False)
        try:
            parity_checks = _parity_checks(p)
        except Exception as e:  # noqa: BLE001 - too little was written to judge
            add("parity.judged", f"{type(e).__name__}: {e}", "judged", False)
    for name, c in (parity_checks or {}).items():
        add(f"parity.{name}", c.get("value"), c.get("limit"), c.get("ok"))
    if not p and report["stages"].get("parity", {}).get("status") != "skipped":
        add("parity", report["stages"].get("parity", {}).get("status"), "ran", False)
    t = report.get("throughput") or {}
    if report["stages"].get("throughput", {}).get("status") not in (None, "skipped"):
        add("throughput.model_only", (t.get("model_only") or {}).get("images_per_s"), "measured",
            bool(t.get("model_only")))
        from_shards = ("gpu_shards", "cpu_shards") if (t.get("config") or {}).get("shards") else ()
        for decode in ("gpu", "cpu", *from_shards):
            r = (t.get("end_to_end") or {}).get(decode)
            if r is None:
                add(f"throughput.end_to_end_{decode}", None, "ran", False)
                continue
            add(f"throughput.end_to_end_{decode}.rows", f"{r.get('rows')} rows, {r.get('dead_letters')} dead",
                f"{r.get('images')} rows, 0 dead", r.get("rows") == r.get("images") and not r.get("dead_letters"))
        for name, tb in (t.get("errors") or {}).items():
            add(f"throughput.ran_{name}", tb.strip().splitlines()[-1][:300], "no exception", False)
    return out


def summary(report: dict, log: Log) -> None:
    log("")
    log("==================== grepq GPU check: summary ====================")
    env = report.get("env") or {}
    versions = env.get("versions", {})
    log(f"torch {env.get('torch')} / torchvision {versions.get('torchvision')} / beam {versions.get('apache-beam')} "
        f"/ open_clip {versions.get('open_clip_torch')} / numpy {versions.get('numpy')} / python {env.get('python')}; "
        f"GPU {(env.get('gpu') or {}).get('name')}")
    for name, s in report["stages"].items():
        log(f"[timing] stage {name:11s} {s.get('status'):8s} {s.get('seconds', 0):7.1f} s  {s.get('why', '')}")
    log(f"[timing] total {report.get('total_s')} s")
    for c in report.get("checks", []):
        mark = {True: "PASS", False: "FAIL", None: "----"}[c["ok"]]
        log(f"{mark} {c['name']}: {json.dumps(c['value'], default=str)[:160]} (limit {c['limit']})")
    t = report.get("throughput") or {}
    if t:
        m = t.get("model_only", {})
        log(f"model-only {m.get('images_per_s')} images/s (GPU peak {m.get('gpu_max_allocated_mib')} MiB, "
            f"util {(m.get('nvidia_smi') or {}).get('util_mean_pct')}%)")
        for d, r in (t.get("decode_only") or {}).items():
            log(f"decode-only ({d}) {r.get('images_per_s')} images/s {r.get('decoders')}")
        for d, r in (t.get("end_to_end") or {}).items():
            smi = r.get("nvidia_smi") or {}
            log(f"end-to-end --decode {d}: {r.get('images_per_s')} images/s wall, "
                f"{r.get('marginal_images_per_s')} without start-up, ratio {r.get('ratio_to_model_only')}, "
                f"GPU peak {r.get('gpu_max_allocated_mib')} MiB, RSS peak {r.get('rss_peak_mib')} MiB, "
                f"GPU util mean {smi.get('util_mean_pct')}% max {smi.get('util_max_pct')}%")
    log("==================================================================")


# --------------------------------------------------------------------------- parity stage (torch, grepq)

VARIANTS = (  # (name, (width, height), Pillow save options, transform)
    ("420", (1024, 768), {"subsampling": 2}, None),
    ("444_portrait", (768, 1024), {"subsampling": 0}, None),
    ("422", (640, 480), {"subsampling": 1}, None),
    ("420_odd", (1023, 767), {"subsampling": 2}, None),
    ("progressive", (1024, 768), {"progressive": True}, None),
    ("narrow", (300, 451), {}, None),
    ("small_upscaled", (180, 120), {}, None),
    ("grey", (640, 480), {}, "grey"),
    ("exif6", (451, 300), {}, "exif6"),
)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def _parity_jpeg(i: int) -> tuple[str, bytes]:
    import io

    import numpy as np
    from PIL import Image
    from skimage import data

    name, (w, h), options, transform = VARIANTS[i % len(VARIANTS)]
    rng = np.random.default_rng(1000 + i)
    im = Image.fromarray(getattr(data, PHOTOS[i % len(PHOTOS)])()).convert("RGB")
    s = rng.uniform(1.0, 1.3) * max(w / im.width, h / im.height)
    im = im.resize((max(w, int(im.width * s)), max(h, int(im.height * s))), Image.BICUBIC)
    x, y = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
    im = im.crop((x, y, x + w, y + h))
    if transform == "grey":
        im = im.convert("L")
    if transform == "exif6":
        exif = Image.Exif()
        exif[0x0112] = 6
        options = {**options, "exif": exif.tobytes()}
    buffer = io.BytesIO()
    im.save(buffer, format="JPEG", quality=int(rng.integers(70, 96)), **options)
    return f"{i:04d}_{name}.jpg", buffer.getvalue()


def _specials(jpeg: bytes) -> dict[str, bytes]:
    import io

    import numpy as np
    from PIL import Image
    from skimage import data

    coffee = Image.fromarray(data.coffee())
    png, cmyk = io.BytesIO(), io.BytesIO()
    coffee.save(png, format="PNG")
    coffee.convert("CMYK").save(cmyk, format="JPEG", quality=90)
    rng = np.random.default_rng(7)
    corrupt = bytearray(jpeg)
    sos = corrupt.find(b"\xff\xda")
    for k in rng.integers(sos + 200, len(corrupt) - 10, 40):  # bytes flipped in the entropy-coded data
        corrupt[k] ^= 0x5A
    return {"rgb.png": png.getvalue(), "cmyk.jpg": cmyk.getvalue(), "truncated.jpg": jpeg[: len(jpeg) // 2],
            "garbage.jpg": b"\xff\xd8\xff\xe0" + rng.bytes(4096), "corrupt.jpg": bytes(corrupt)}


def _diff_stats(a, b) -> dict:
    """|a - b| over one image's uint8 pixels: mean, 99th percentile, max; shapes must agree."""
    import numpy as np

    if tuple(a.shape) != tuple(b.shape):
        return {"shape_mismatch": [list(a.shape), list(b.shape)], "mean": float("inf"), "p99": float("inf"),
                "max": float("inf")}
    d = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    return {"mean": float(d.mean()), "p99": float(np.percentile(d, 99)), "max": int(d.max())}


def _aggregate(per_image: dict[str, dict]) -> dict:
    """Worst and typical of per-image diff stats, and the worst image by variant."""
    import numpy as np

    if not per_image:
        return {}
    names = list(per_image)
    means = np.array([per_image[n]["mean"] for n in names])
    p99s = np.array([per_image[n]["p99"] for n in names])
    maxes = np.array([per_image[n]["max"] for n in names], dtype=float)
    by_variant: dict[str, dict] = {}
    for n in names:
        v = n.split("_", 1)[1].rsplit(".", 1)[0] if "_" in n else n
        cur = by_variant.setdefault(v, {"mean_max": 0.0, "p99_max": 0.0, "max": 0.0})
        cur["mean_max"] = round(max(cur["mean_max"], per_image[n]["mean"]), 3)
        cur["p99_max"] = max(cur["p99_max"], per_image[n]["p99"])
        cur["max"] = max(cur["max"], float(per_image[n]["max"]))
    return {"images": len(names), "mean_of_means": round(float(means.mean()), 4),
            "worst_mean": round(float(means.max()), 4),
            "worst_mean_image": names[int(means.argmax())], "worst_p99": float(p99s.max()),
            "worst_max": float(maxes.max()), "by_variant": by_variant,
            "shape_mismatches": [n for n in names if "shape_mismatch" in per_image[n]]}


def _compare_rows(a: list[dict], b: list[dict]) -> dict:
    """Feature rows b against reference rows a: per-column worst cosine and relative L2, zero-shot agreement."""
    import numpy as np
    from scipy.stats import spearmanr

    out = {}
    for col in ("ll_features", "hl_features"):
        if a[0].get(col) is None:
            continue
        x = np.stack([r[col] for r in a]).astype(np.float64)
        y = np.stack([r[col] for r in b]).astype(np.float64)
        cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
        rel = np.linalg.norm(x - y, axis=1) / np.linalg.norm(x, axis=1)
        out[col] = {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "rel_l2_max": float(rel.max()),
                    "rel_l2_mean": float(rel.mean()), "max_abs": float(np.abs(x - y).max())}
    for col in ("zs_ll", "zs_hl", "zs_combined"):
        x = np.array([np.nan if r.get(col) is None else r[col] for r in a], dtype=np.float64)
        y = np.array([np.nan if r.get(col) is None else r[col] for r in b], dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 2:
            out[col] = {"finite": int(ok.sum())}
            continue
        diff = np.abs(x[ok] - y[ok])
        std = float(x[ok].std())
        rho = float(spearmanr(x[ok], y[ok]).statistic) if std > 0 else None
        out[col] = {"finite": int(ok.sum()), "nan_mismatch": int((np.isfinite(x) != np.isfinite(y)).sum()),
                    "max_abs": float(diff.max()), "std_across_images": std,
                    "max_abs_over_std": float(diff.max() / std) if std > 0 else None, "spearman": rho}
    return out


def _outcome(item) -> dict:
    if hasattr(item, "decoder"):
        return {"kind": "views", "decoder": item.decoder, "size": [item.width, item.height]}
    return {"kind": "error", "stage": getattr(item, "stage", None), "reason": getattr(item, "reason", None),
            "detail": str(item)[:200]}


def parity(args) -> None:
    """The parity stage (see the module docstring): writes args.json, prints [timing] lines.

    Its parts run one after the other, each caught on its own: a part that
    raises is recorded under "errors" (its traceback) and the next one runs.
    """
    import concurrent.futures
    import contextlib
    import dataclasses
    import traceback

    import numpy as np
    import torch

    sys.path.insert(0, str(BENCH))
    from extract_throughput import random_weights

    from grepq_core.errors import ImageError
    from grepq_core.images.decode import decode_image
    from grepq_core.model.cut import image_views
    from grepq_core.model.device_decode import decode_on_device, device_decoder_name
    from grepq_core.model.extractor import Extractor
    from grepq_core.model.profiles import spec_for

    result: dict = {"torch": torch.__version__, "device": args.device, "timings_s": {}, "errors": {}}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t_stage = time.perf_counter()
    last = [t_stage]
    threads = os.cpu_count() or 1
    batch = args.batch_size

    def tick(name):
        now = time.perf_counter()
        result["timings_s"][name] = round(now - last[0], 2)
        print(f"[timing] parity/{name}: {now - last[0]:.1f} s", flush=True)
        last[0] = now

    def save():
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))

    @contextlib.contextmanager
    def part(name):
        try:
            yield
        except Exception as e:  # noqa: BLE001 - recorded; the next part runs
            result["errors"][name] = traceback.format_exc(limit=10)[-4000:]
            print(f"parity/{name} FAILED: {type(e).__name__}: {e}", flush=True)
            if torch.cuda.is_available():
                with contextlib.suppress(Exception):
                    torch.cuda.synchronize()
        finally:
            tick(name)
            save()

    def chunks(seq):
        return [seq[i:i + batch] for i in range(0, len(seq), batch)]

    def host(x):
        return torch.as_tensor(x).cpu().numpy()

    # corpus, weights, both extractors: without these nothing can be compared (no catching)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:  # Pillow releases the GIL
        jpegs = dict(pool.map(_parity_jpeg, range(args.images)))
    specials = _specials(next(iter(jpegs.values())))
    names, datas = list(jpegs), list(jpegs.values())
    result["corpus"] = {"images": len(names), "variants": [v[0] for v in VARIANTS],
                        "mean_kb": round(sum(map(len, datas)) / len(datas) / 1024, 1)}
    tick("corpus")
    weights = random_weights(work, args.ll_arch, args.hl_model)
    spec_cpu = spec_for(ll_weights=weights["ll"], pristine=weights["pristine"], hl_model=args.hl_model,
                        hl_weights=weights["hl"], device="cpu", decode="cpu", batch_size=batch)
    spec_dev = dataclasses.replace(spec_cpu, device=args.device, decode="gpu")
    ref, dev = Extractor.load(spec_cpu), Extractor.load(spec_dev)
    device = dev.device
    result["device_decoder"] = device_decoder_name(device)
    try:  # what the device extractor actually runs: bf16 autocast and channels_last on CUDA
        module = dev.encoders["ll"].module
        x = torch.zeros(1, 3, 224, 224, device=device).contiguous(memory_format=dev._memory_format)
        with torch.inference_mode(), dev._autocast:
            result["device_output_dtype"] = str(module(x).dtype)
        conv = next(p for p in module.parameters() if p.ndim == 4)
        result["device_weights_channels_last"] = bool(conv.is_contiguous(memory_format=torch.channels_last)
                                                      and not conv.is_contiguous())
    except Exception as e:  # noqa: BLE001 - a private detail moved: record, go on
        result["device_introspection_error"] = f"{type(e).__name__}: {e}"
    tick("load_models")

    # CPU path: Pillow decode, views on the CPU, fp32 encoders on the CPU (the reference: no catching)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        pixels = list(pool.map(decode_image, datas))
        cpu_views = list(pool.map(lambda p: image_views(p, spec_cpu), pixels))
    tick("cpu_decode_and_views")
    cpu_rows = [r for c in chunks(cpu_views) for r in ref.encode(c)]
    tick("cpu_encode_fp32")
    save()

    dev_views, good, dev_rows_good = [], [], []
    with part("device_decode_and_views"):
        dev_views = [v for c in chunks(datas) for v in dev.decode(c)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        decoders: dict[str, int] = {}
        for v in dev_views:
            if not isinstance(v, ImageError):
                decoders[v.decoder] = decoders.get(v.decoder, 0) + 1
        result["device_decode"] = {"decoders": decoders,
                                   "errors": {n: str(v) for n, v in zip(names, dev_views) if isinstance(v, ImageError)}}
        good = [i for i, v in enumerate(dev_views) if not isinstance(v, ImageError)]
    with part("device_encode"):  # the whole device path against the CPU path
        dev_rows_good = [r for c in chunks([dev_views[i] for i in good]) for r in dev.encode(c)]
        result.setdefault("features", {})["total"] = _compare_rows([cpu_rows[i] for i in good], dev_rows_good)
    with part("device_encode_of_cpu_views"):
        cross_rows = [r for c in chunks(cpu_views) for r in dev.encode(c)]
        result.setdefault("features", {})["bf16_only"] = _compare_rows(cpu_rows, cross_rows)  # same views
        if dev_rows_good:
            result["features"]["decode_only"] = _compare_rows([cross_rows[i] for i in good], dev_rows_good)
    with part("pixel_comparisons"):  # the device decoder against Pillow, whole images, and the views cut
        decode_diff, view_diff = {}, {}
        for c_idx in chunks(list(range(len(datas)))):
            for i, image in zip(c_idx, decode_on_device([datas[i] for i in c_idx], device)):
                if image is not None:  # what the device decoder itself made
                    decode_diff[names[i]] = _diff_stats(image.permute(1, 2, 0).cpu().numpy(), pixels[i])
        for i in good:
            for key, cpu_view in cpu_views[i].tensors.items():
                view_diff.setdefault(key, {})[names[i]] = _diff_stats(host(dev_views[i].tensors[key]),
                                                                      np.asarray(cpu_view))
        result["decode_vs_pillow"] = _aggregate(decode_diff)
        result["views_vs_cpu"] = {k: _aggregate(v) for k, v in view_diff.items()}

    with part("threads"):  # four threads feeding one model, a CUDA stream each, against the rows of one
        parts = chunks(good)

        def feed(idx):
            return dev.encode(dev.decode([datas[i] for i in idx]))

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            threaded = [r for rows in pool.map(feed, parts) for r in rows]
        if device.type == "cuda":
            torch.cuda.synchronize()
        result["threads"] = {"threads": 4, "batches": len(parts), **_compare_rows(dev_rows_good, threaded)}

    with part("pipeline_mixed"):  # the same mix through `grepq extract`, --decode gpu and --decode cpu
        from pipelines import extract
        from transforms.store import read_table

        corpus = work / "mixed"
        corpus.mkdir(parents=True, exist_ok=True)
        for n in names[: max(8, min(12, len(names)))]:
            (corpus / n).write_bytes(jpegs[n])
        for s in SPECIALS:
            (corpus / s).write_bytes(specials[s])
        flags = ["--ll-weights", weights["ll"], "--pristine", weights["pristine"], "--hl-model", args.hl_model,
                 "--hl-weights", weights["hl"], "--device", args.device, "--batch-size", str(min(batch, 8))]
        tables = {}
        for decode in ("gpu", "cpu"):
            out = work / f"extract_{decode}"
            shutil.rmtree(out, ignore_errors=True)
            extract.run(["--input", str(corpus / "*"), "--output", str(out), "--decode", decode, *flags])
            feats = read_table(str(out), "features").to_pylist()
            try:
                dead = read_table(str(out), "dead_letters").to_pylist()
            except Exception:  # noqa: BLE001 - no dead letters at all
                dead = []
            tables[decode] = ({Path(r["path"]).name: r for r in feats}, {Path(r["path"]).name: r for r in dead})
        (gpu_feats, gpu_dead), (cpu_feats, cpu_dead) = tables["gpu"], tables["cpu"]
        common = sorted(set(gpu_feats) & set(cpu_feats))
        result["pipeline"] = {
            "decoders_gpu_run": {n: r["decoder"] for n, r in sorted(gpu_feats.items())},
            "dead_gpu_run": {n: [r["stage"], r["reason"]] for n, r in sorted(gpu_dead.items())},
            "dead_cpu_run": {n: [r["stage"], r["reason"]] for n, r in sorted(cpu_dead.items())},
            "rows_gpu_run": len(gpu_feats), "rows_cpu_run": len(cpu_feats),
            "features_gpu_vs_cpu_run": _compare_rows([cpu_feats[n] for n in common], [gpu_feats[n] for n in common])
            if common else {},
        }

    # last: PNG and CMYK bytes reach the device decoder only here (grepq extract routes them to Pillow)
    with part("mixed_batch"):  # specials between plain JPEGs in the device's batches (Extractor.decode)
        mixed_names, mixed = [], []
        plain = iter(range(len(datas)))
        for s in SPECIALS:
            i = next(plain)
            mixed_names += [names[i], s]
            mixed += [datas[i], specials[s]]
        while len(mixed) < batch and (i := next(plain, None)) is not None:
            mixed_names.append(names[i])
            mixed.append(datas[i])
        decoded = [v for c in chunks(mixed) for v in dev.decode(c)]
        specials_result = {}
        for s, v in zip(mixed_names, decoded):
            if s not in SPECIALS:
                continue
            o = _outcome(v)
            try:
                cpu_pixels, cpu_o = decode_image(specials[s]), {"kind": "views", "decoder": "cpu"}
            except ImageError as e:
                cpu_pixels, cpu_o = None, _outcome(e)
            if o["kind"] == "views" and cpu_pixels is not None:
                ref_views = image_views(cpu_pixels, spec_cpu)
                diffs = [_diff_stats(host(v.tensors[k]), np.asarray(ref_views.tensors[k])) for k in ref_views.tensors]
                o["views_vs_cpu"] = {"worst_mean": round(max(d["mean"] for d in diffs), 4),
                                     "worst_p99": max(d["p99"] for d in diffs),
                                     "worst_max": max(d["max"] for d in diffs)}
            expected = EXPECTED[s]
            if expected == "cpu":
                # Pillow's fallback ("cpu"), or a device decoder that got the same pixels (colours) as Pillow
                vc = o.get("views_vs_cpu")
                ok = (o["kind"] == "views" and vc is not None and vc["worst_mean"] <= TOLERANCES["views_mean"]
                      and vc["worst_p99"] <= TOLERANCES["views_p99"])
            elif expected == "error":
                ok = o["kind"] == "error"
            else:
                ok = o["kind"] == cpu_o["kind"]
            specials_result[s] = {"device": o, "cpu_path": cpu_o, "expected": expected, "ok": ok}
        clean = dict(zip(names, dev_views))
        plain_in_mixed = [(n, v) for n, v in zip(mixed_names, decoded) if n not in SPECIALS]
        vs_clean = _aggregate({f"{n}:{k}": _diff_stats(host(v.tensors[k]), host(clean[n].tensors[k]))
                               for n, v in plain_in_mixed if not isinstance(v, ImageError)
                               and not isinstance(clean.get(n), (ImageError, type(None))) for k in v.tensors})
        result["mixed_batch"] = {
            "batches": [mixed_names[i:i + batch] for i in range(0, len(mixed_names), batch)],
            "specials": specials_result,
            "plain_decoders": sorted({v.decoder for _, v in plain_in_mixed if not isinstance(v, ImageError)}),
            "plain_errors": [n for n, v in plain_in_mixed if isinstance(v, ImageError)],
            "plain_views_vs_clean_batch": {k: vs_clean.get(k) for k in ("worst_mean", "worst_p99", "worst_max")},
        }

    result["checks"] = _parity_checks(result)
    result["seconds"] = round(time.perf_counter() - t_stage, 1)
    save()
    c = result["checks"]
    bad = [k for k, v in c.items() if not v["ok"]]
    print(f"parity: {len(c) - len(bad)}/{len(c)} checks pass" + (f"; failing: {', '.join(bad)}" if bad else ""))


def _parity_checks(result: dict) -> dict:
    """Each judgement of the parity stage: {name: {value, limit, ok}}; a part that raised fails.

    Also run by the orchestrator on what a parity process that died wrote.
    """
    t = TOLERANCES
    c = {}
    n, want = result["corpus"]["images"], result.get("device_decoder")

    def check(name, value, limit, ok):
        c[name] = {"value": value, "limit": limit, "ok": bool(ok)}

    for name in result.get("errors", {}):
        check(f"ran_{name}", result["errors"][name].strip().splitlines()[-1][:300], "no exception", False)
    dd = result.get("device_decode")
    if dd is not None:
        check("device_decoder_used", dd["decoders"], f"all {n} by {want}", dd["decoders"] == {want: n})
        check("device_decode_errors", sorted(dd["errors"]), "none", not dd["errors"])
    d = result.get("decode_vs_pillow")
    if d:
        check("decode_pixels", {"worst_mean": d["worst_mean"], "worst_p99": d["worst_p99"], "worst_max": d["worst_max"],
                                "worst_image": d["worst_mean_image"]},
              f"mean <= {t['decode_mean']}, p99 <= {t['decode_p99']}",
              d["worst_mean"] <= t["decode_mean"] and d["worst_p99"] <= t["decode_p99"] and not d["shape_mismatches"])
    for key, v in (result.get("views_vs_cpu") or {}).items():
        check(f"views_{key}", {"worst_mean": v["worst_mean"], "worst_p99": v["worst_p99"], "worst_max": v["worst_max"],
                               "worst_image": v["worst_mean_image"]},
              f"mean <= {t['views_mean']}, p99 <= {t['views_p99']}",
              v["worst_mean"] <= t["views_mean"] and v["worst_p99"] <= t["views_p99"] and not v["shape_mismatches"])
    for kind, cos_min, rel_max in (("bf16_only", t["bf16_cosine_min"], t["bf16_rel_l2_max"]),
                                   ("total", t["total_cosine_min"], t["total_rel_l2_max"])):
        for col, f in (result.get("features", {}).get(kind) or {}).items():
            if col.endswith("_features"):
                check(f"features_{kind}_{col}", {"cosine_min": round(f["cosine_min"], 6),
                                                 "rel_l2_max": round(f["rel_l2_max"], 5)},
                      f"cosine >= {cos_min}, rel L2 <= {rel_max}",
                      f["cosine_min"] >= cos_min and f["rel_l2_max"] <= rel_max)
            elif "max_abs" in f:
                over_std, rho = f["max_abs_over_std"], f["spearman"]
                check(f"zero_shot_{kind}_{col}", {"max_abs": round(f["max_abs"], 6), "nan_mismatch": f["nan_mismatch"],
                                                  "max_abs_over_std": over_std and round(over_std, 4),
                                                  "spearman": rho and round(rho, 5)},
                      f"max|diff| <= {t['zero_shot_abs_max']}, same NaNs (spread and Spearman: not judged)",
                      f["max_abs"] <= t["zero_shot_abs_max"] and not f["nan_mismatch"])
    if "threads" in result:
        th = [v for k, v in result["threads"].items() if k.endswith("_features")]
        check("threads_rows", [round(v["cosine_min"], 7) for v in th], f"cosine >= {t['threads_cosine_min']}",
              bool(th) and all(v["cosine_min"] >= t["threads_cosine_min"] for v in th))
    mb = result.get("mixed_batch")
    if mb:
        for s, r in mb["specials"].items():
            cpu = r["cpu_path"]
            check(f"mixed_{s}", r["device"], f"{r['expected']} (CPU path: {cpu['kind']} "
                  f"{cpu.get('reason') or cpu.get('decoder')})", r["ok"])
        vc = mb["plain_views_vs_clean_batch"]
        check("mixed_plain_jpegs",
              {"decoders": mb["plain_decoders"], "errors": mb["plain_errors"], "views_vs_clean": vc},
              f"all {want}, no errors, views as in a clean batch (mean <= {t['views_mean']}, p99 <= {t['views_p99']})",
              mb["plain_decoders"] == [want] and not mb["plain_errors"] and vc["worst_mean"] is not None
              and vc["worst_mean"] <= t["views_mean"] and vc["worst_p99"] <= t["views_p99"])
    pl = result.get("pipeline")
    if pl:
        dec = pl["decoders_gpu_run"]
        check("pipeline_decoders", dec, f"png and cmyk 'cpu', the JPEGs '{want}'",
              dec.get("rgb.png") == "cpu" and dec.get("cmyk.jpg") == "cpu"
              and all(v == want for n, v in dec.items() if n not in SPECIALS))
        check("pipeline_dead_letters", {"gpu": pl["dead_gpu_run"], "cpu": pl["dead_cpu_run"]},
              "truncated and garbage dead in both runs, the same set",
              {"truncated.jpg", "garbage.jpg"} <= set(pl["dead_gpu_run"])
              and set(pl["dead_gpu_run"]) == set(pl["dead_cpu_run"]))
    return c


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny models, a handful of images, no install")
    parser.add_argument("--out", default=os.environ.get("OUT") or "/tmp/grepq-gpu-check-out",
                        help="where gpu_check.json and gpu_check.log go (default $OUT)")
    parser.add_argument("--work", default=None, help="scratch folder (default /tmp/grepq-gpu-check[-smoke])")
    parser.add_argument("--keep-work", action="store_true", help="keep the last run's corpora in the scratch folder")
    parser.add_argument("--wheels", default=".whl", help="folder of carried wheels, relative to the repo")
    parser.add_argument("--site", default="/tmp/site", help="where the wheels are installed")
    parser.add_argument("--deadline", type=float, default=None, help="seconds for all stages (default 420; smoke 170)")
    parser.add_argument("--parity-images", type=int, default=None, help="default 256; smoke 9")
    parser.add_argument("--parity-batch-size", type=int, default=None, help="default 64; smoke 4")
    parser.add_argument("--throughput-images", type=int, default=None, help="default 4000; smoke 8")
    parser.add_argument("--batch-size", type=int, default=None, help="throughput batch size (default 256; smoke 4)")
    parser.add_argument("--overhead-images", type=int, default=None, help="default 256; smoke 0")
    parser.add_argument("--shard-samples", type=int, default=None,
                        help="the throughput corpus is also read as WebDataset shards of this many samples "
                             "(default 1000; smoke 4)")
    parser.add_argument("--beam-workers", type=int, default=4, help="FnApiRunner threads in the end-to-end runs")
    parser.add_argument("--ll-arch", default="resnet18")
    parser.add_argument("--hl-model", default="RN50")
    # the parity stage, run in its own process by the orchestrator
    parser.add_argument("--stage", choices=("parity",), help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", help="the model's device (smoke: cpu)")
    parser.add_argument("--images", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage == "parity":
        parity(args)
        return 0
    smoke = args.smoke
    defaults = {"deadline": (420, 170), "parity_images": (256, len(VARIANTS)), "parity_batch_size": (64, 4),
                "throughput_images": (4000, 8), "batch_size": (256, 4), "overhead_images": (256, 0),
                "shard_samples": (1000, 4)}
    for name, (full, small) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if smoke else full)
    args.work = args.work or ("/tmp/grepq-gpu-check-smoke" if smoke else "/tmp/grepq-gpu-check")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
