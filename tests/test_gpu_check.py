"""benchmarks/gpu_check.py --smoke: the GPU check's whole path, on the CPU, so it cannot rot before a GPU runs it.

The smoke runs the same entry point (benchmarks/gpu_check.sh) as the device
call in benchmarks/README.md, with tiny models, 9 parity JPEGs and 8
throughput JPEGs; on the CPU the "device" path is torchvision's
libjpeg-turbo decoder and fp32, so its views and features must equal the
CPU path's exactly. About a minute on the 2-core development machine.
"""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import gpu_check
from benchmarks.extract_throughput import with_comment

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check_out")
    work = tmp_path_factory.mktemp("gpu_check_work")
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke", "--out", str(out),
                           "--work", str(work)], cwd=ROOT, env=dict(os.environ, PYTHON=sys.executable),
                          capture_output=True, text=True, timeout=480)
    assert (out / "gpu_check.json").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.log").read_text(), out


def test_smoke_runs_every_cpu_stage_and_every_check_passes(smoke):
    proc, report, log, out = smoke
    failing = [c for c in report["checks"] if c["ok"] is not True]
    assert proc.returncode == 0 and not failing, (failing, proc.stdout[-4000:])
    assert {n: s["status"] for n, s in report["stages"].items()} == {
        "install": "skipped", "env": "ok", "cuda_tests": "skipped", "parity": "ok", "throughput": "ok"}
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log"]
    assert report["env"]["torch"] and report["env"]["versions"]["apache-beam"]


def test_smoke_device_path_on_the_cpu_is_exact(smoke):
    _, report, _, _ = smoke
    p = report["parity"]
    assert not p["errors"]
    assert p["device_decode"]["decoders"] == {"libjpeg-turbo": len(gpu_check.VARIANTS)}
    assert p["decode_vs_pillow"]["worst_max"] == 0 and not p["decode_vs_pillow"]["shape_mismatches"]
    assert set(p["views_vs_cpu"]) == {"ll", "ll_patches", "hl"}
    assert all(v["worst_max"] == 0 for v in p["views_vs_cpu"].values())
    for kind in ("bf16_only", "decode_only", "total"):
        for col in ("ll_features", "hl_features"):
            assert p["features"][kind][col]["max_abs"] < 1e-5, (kind, col)
    specials = p["mixed_batch"]["specials"]
    assert set(specials) == set(gpu_check.SPECIALS)
    assert specials["rgb.png"]["device"]["decoder"] == "cpu"
    truncated = specials["truncated.jpg"]["device"]
    assert (truncated["kind"], truncated["stage"], truncated["reason"]) == ("error", "decode", "truncated")
    assert p["pipeline"]["decoders_gpu_run"]["cmyk.jpg"] == "cpu"
    assert set(p["pipeline"]["dead_gpu_run"]) == {"truncated.jpg", "garbage.jpg"}


def test_smoke_throughput_has_every_figure(smoke):
    _, report, _, _ = smoke
    t = report["throughput"]
    assert t["model_only"]["images_per_s"] > 0 and t["decode_only"]["gpu"]["images"] == 8
    for decode, decoder in (("gpu", "libjpeg-turbo"), ("cpu", "cpu")):
        r = t["end_to_end"][decode]
        assert (r["rows"], r["dead_letters"], r["decoders"]) == (8, 0, {decoder: 8})
        assert r["images_per_s"] > 0 and r["rss_peak_mib"] > 0 and r["ratio_to_model_only"] > 0


def test_every_stage_is_timed_and_the_log_ends_with_the_summary(smoke):
    _, report, log, _ = smoke
    for stage in ("env", "parity", "throughput"):
        assert re.search(rf"^\[timing\] {stage}: [\d.]+ s", log, re.M), stage
    for part in ("corpus", "cpu_encode_fp32", "device_decode_and_views", "mixed_batch", "pipeline_mixed"):
        assert f"[timing] parity/{part}:" in log, part
    for phase in ("model_only", "decode_only_gpu", "end_to_end_gpu", "end_to_end_cpu"):
        assert f"[timing] throughput/{phase}:" in log, phase
    tail = log.strip().splitlines()[-80:]
    assert any("grepq GPU check: summary" in line for line in tail)
    assert any(line.startswith("[timing] total") for line in tail)
    assert report["total_s"] < 240


def test_the_cuda_tests_are_the_ones_parametrized_on_devices():
    files = gpu_check._cuda_test_files()
    assert {"tests/test_views.py", "tests/test_fsim.py"} <= set(files)
    assert not {"tests/test_gpu_check.py", "tests/test_install.py"} & set(files)  # CUDA_VISIBLE_DEVICES is no DEVICES


def test_corpus_copies_have_their_own_bytes_and_the_same_pixels():
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    a, b = with_comment(jpeg, b"grepq-bench 1"), with_comment(jpeg, b"grepq-bench 2")
    assert a != b
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(a))), np.asarray(Image.open(io.BytesIO(jpeg))))


def test_the_wheels_are_constraints_versions_and_never_torch():
    script = (ROOT / "benchmarks" / "fetch_gpu_wheels.sh").read_text()
    wheels = dict(re.findall(r"([A-Za-z0-9_.-]+)==([0-9][^\s)]*)", script.split("WHEELS=(", 1)[1].split(")", 1)[0]))
    norm = lambda name: re.sub(r"[-_.]+", "-", name.lower())  # noqa: E731
    pins = {norm(n): v for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "constraints.txt").read_text(),
                                              re.M)}
    assert {"apache-beam", "open-clip-torch", "ftfy", "piq"} <= {norm(n) for n in wheels}
    assert not {"torch", "torchvision", "numpy"} & {norm(n) for n in wheels}
    for name, version in wheels.items():
        if norm(name) in pins:
            assert pins[norm(name)] == version, name


def test_a_parity_process_that_died_is_judged_on_what_it_wrote():
    partial = {"corpus": {"images": 3}, "device_decoder": "nvjpeg", "errors": {},
               "device_decode": {"decoders": {"nvjpeg": 3}, "errors": {}}}
    report = {"stages": {"env": {"status": "ok"}, "parity": {"status": "timeout"}}, "parity": partial}
    found = {c["name"]: c["ok"] for c in gpu_check.checks(report)}
    assert found["parity.completed"] is False
    assert found["parity.device_decoder_used"] is True and found["parity.device_decode_errors"] is True
