"""`grepq compact`: an output's committed shards -> fewer, larger ones, atomically, every current row once.

    hold the lock -> finish what a killed compaction left -> rewrite each kind's shards
      -> name what is replaced -> commit -> delete the replaced shards

Readers see the old shards or the new ones, never both and never half of
either (transforms/compaction.py). `grepq run --incremental` compacts by
itself when an output holds more than --compact-above shards.
"""
from __future__ import annotations

import argparse

from pipelines.options import HelpFormatter

__all__ = ["run", "arg_parser", "compact"]


def compact(output: str, rows_per_shard: int | None = None, break_lock: bool = False) -> str:
    """Compact `output` under its lock; the one-line summary."""
    from transforms import compaction, runs

    before = compaction.shard_count(output)
    run = runs.new_run_id()
    with runs.OutputLock(output, run, force=break_lock):
        runs.clean_uncommitted(output, compaction.KINDS)
        manifest = compaction.compact(output, run, rows_per_shard or compaction.ROWS_PER_SHARD)
    if manifest is None:
        return f"{output} holds {before} shard(s): nothing to merge"
    rows = ", ".join(f"{n} {kind.replace('_', ' ')} rows" for kind, n in manifest["counts"].items())
    return f"{before} shards of {len(manifest['replaced_runs'])} runs ({rows}) -> {compaction.shard_count(output)}"


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grepq compact", description=__doc__.strip().splitlines()[0],
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    parser.add_argument("--output", required=True, help="an extract run's output folder (local or gs://)")
    parser.add_argument("--rows-per-shard", type=int,
                        help="rows in each new shard (not given: transforms/compaction.py's ROWS_PER_SHARD, a million)")
    parser.add_argument("--break-lock", action="store_true",
                        help="take over --output from a run that died holding its lock")
    return parser


def run(argv=None):
    args = arg_parser().parse_args(argv)
    print(f"compact: {compact(args.output, args.rows_per_shard, args.break_lock)}")
