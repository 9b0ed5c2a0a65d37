#!/usr/bin/env python3
"""Smoke check of an installed grepq: what a Dataflow worker loads imports and runs.

1. Imports every module of grepq_core, transforms and pipelines, found by
   walking the packages with pkgutil, so a new module is covered without
   editing this file.
2. Runs the installed `grepq` command (the console script beside this
   interpreter) on two bundled samples:

       grepq extract --input 'samples/aero3.jpg' --input 'samples/butterfly.jpg' \
                     --output OUTPUT --pathways ll

   and checks that both images became feature rows, with LL features, and
   none a dead letter. The LL pathway needs no download (its model is in the
   package), so this runs offline, on the CPU when there is no GPU.

Run it with the interpreter of the environment to check, from anywhere:

    python scripts/smoke_check.py --output /tmp/smoke     # the Dockerfile's last step
    .venv/bin/python scripts/smoke_check.py               # tests/test_install.py

Exit status 0 when everything passed; otherwise it says what failed.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("grepq_core", "transforms", "pipelines")
SAMPLES = ("samples/aero3.jpg", "samples/butterfly.jpg")


def all_modules(packages=PACKAGES) -> tuple[list[str], list[str]]:
    """Every module name under `packages` (imported while walking), and the failures."""
    names: list[str] = []
    failures: list[str] = []
    for name in packages:
        try:
            package = importlib.import_module(name)
        except Exception:
            failures.append(f"{name}: {traceback.format_exc(limit=3)}")
            continue
        names.append(name)

        def onerror(failed: str) -> None:
            failures.append(f"{failed}: {traceback.format_exc(limit=3)}")

        for info in pkgutil.walk_packages(package.__path__, prefix=name + ".", onerror=onerror):
            names.append(info.name)
    return names, failures


def import_all(packages=PACKAGES) -> list[str]:
    """Import every module; return the failures (empty when all imported)."""
    names, failures = all_modules(packages)
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            failures.append(f"{name}: {traceback.format_exc(limit=3)}")
    print(f"imported {len(names)} modules of {', '.join(packages)}")
    for name in packages:
        module = sys.modules.get(name)
        print(f"  {name} from {Path(module.__file__).parent if module else '?'}")
    return failures


def grepq_command() -> Path:
    """The `grepq` console script installed beside this interpreter."""
    script = Path(sys.executable).parent / ("grepq.exe" if os.name == "nt" else "grepq")
    if not script.exists():
        raise SystemExit(f"FAIL: no grepq command beside {sys.executable}: is grepq installed here?")
    return script


def extract_samples(output: Path) -> list[str]:
    """Run grepq extract on the two samples; return what is wrong with its output."""
    import pyarrow.parquet as pq

    if output.exists() and any(output.iterdir()):
        return [f"{output} is not empty; give a new --output"]
    cmd = [str(grepq_command()), "extract"]
    for sample in SAMPLES:
        cmd += ["--input", sample]
    cmd += ["--output", str(output), "--pathways", "ll"]
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may need the internet
    print("$ " + " ".join(cmd), flush=True)
    start = time.monotonic()
    run = subprocess.run(cmd, cwd=ROOT, env=env)
    print(f"grepq extract exited {run.returncode} after {time.monotonic() - start:.1f} s")
    if run.returncode:
        return [f"grepq extract exited {run.returncode}"]

    problems = []
    shards = sorted((output / "features").glob("*.parquet"))
    if not shards:
        return [f"no features/*.parquet under {output}"]
    rows = [row for shard in shards for row in pq.read_table(shard).to_pylist()]
    names = sorted(Path(row["path"]).name for row in rows)
    if names != sorted(Path(s).name for s in SAMPLES):
        problems.append(f"feature rows for {names}, expected one for each of {list(SAMPLES)}")
    for row in rows:
        if not row.get("ll_features"):
            problems.append(f"{row['path']}: no LL features")
    dead = [row for shard in sorted((output / "dead_letters").glob("*.parquet"))
            for row in pq.read_table(shard).to_pylist()]
    if dead:
        problems.append(f"dead letters: {dead}")
    if not problems:
        print(f"{len(rows)} feature rows ({len(rows[0]['ll_features'])}-d LL), no dead letters")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path,
                        help="where grepq extract writes (must be new or empty; default: a temporary folder)")
    parser.add_argument("--imports-only", action="store_true", help="skip the extract run")
    args = parser.parse_args(argv)

    try:
        import torch
        print(f"python {sys.version.split()[0]} at {sys.executable}; torch {torch.__version__} "
              f"(CUDA {torch.version.cuda}, GPU {'yes' if torch.cuda.is_available() else 'no'})")
    except Exception:
        print("FAIL: torch does not import\n" + traceback.format_exc(limit=3))
        return 1

    problems = import_all()
    if not args.imports_only:
        if args.output:
            problems += extract_samples(args.output)
        else:
            with tempfile.TemporaryDirectory(prefix="grepq-smoke-") as tmp:
                problems += extract_samples(Path(tmp) / "out")
    for problem in problems:
        print("FAIL: " + problem, file=sys.stderr)
    print("smoke check " + ("FAILED" if problems else "passed"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
