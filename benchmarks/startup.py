"""What a fresh process pays before it does any work: imports, model loads, one image.

    python benchmarks/startup.py [--repeat 3]

Prints, each a median over fresh processes:

- `grepq_core.load(pathways="ll").score([one sample])`: wall seconds from
  interpreter start to the frame;
- `grepq score` over a small existing feature folder: wall seconds, and
  which heavy packages it imported (it should need neither open_clip nor
  torchvision to read Parquet);
- `grepq COMMAND --help` for every command: the slowest, in seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "aero3.jpg"
HEAVY = ("open_clip", "torchvision", "apache_beam", "sklearn", "torch")

_API = f"""
import grepq_core
frame = grepq_core.load(pathways="ll").score([{str(SAMPLE)!r}])
assert frame["score"].notna().all(), frame
"""

_CLI = """
import json, sys
from pipelines.cli import main
code = main(sys.argv[1:])
print(json.dumps({{"code": code, "imported": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def _timed(args: list[str], env: dict | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def _median(args: list[str], repeat: int, env: dict | None = None) -> tuple[float, str]:
    runs = [_timed(args, env) for _ in range(repeat)]
    return statistics.median(s for s, _ in runs), runs[-1][1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per figure")
    args = parser.parse_args(argv)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    api, _ = _median([sys.executable, "-c", _API], args.repeat, env)
    print(f"load(pathways='ll').score([1 image]) in a fresh process: {api:.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        features = f"{tmp}/out"
        _timed([sys.executable, "-m", "pipelines.cli", "extract", "--input", str(SAMPLE), "--output", features,
                "--pathways", "ll"], env)
        cli = [sys.executable, "-c", _CLI.format(heavy=HEAVY), "score", "--features", features,
               "--output", f"{tmp}/scored", "--replace"]
        seconds, out = _median(cli, args.repeat, env)
        imported = json.loads(out.strip().splitlines()[-1])["imported"]
        print(f"grepq score over an existing feature folder: {seconds:.2f} s; imported "
              f"{', '.join(imported) or 'none of ' + ', '.join(HEAVY)}")

    from pipelines.cli import COMMANDS

    helps = {name: _median([sys.executable, "-m", "pipelines.cli", name, "--help"], 1, env)[0] for name in COMMANDS}
    slowest = max(helps, key=helps.get)
    print(f"grepq COMMAND --help: slowest {slowest} {helps[slowest]:.2f} s, median "
          f"{statistics.median(helps.values()):.2f} s")


if __name__ == "__main__":
    main()
