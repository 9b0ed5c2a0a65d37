"""Beam counters for extract runs, and the one-line summary printed at the end.

The runner surfaces the counters while a job runs (the Dataflow UI shows them
live); the summary gives the totals and the rate when the job ends.
"""
from __future__ import annotations

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

__all__ = ["NAMESPACE", "READ", "SCORED", "DEAD", "SKIPPED", "COPIED", "read", "ended", "totals", "summary"]

NAMESPACE = "grepq"
READ = Metrics.counter(NAMESPACE, "images_read")
SCORED = Metrics.counter(NAMESPACE, "images_scored")
DEAD = Metrics.counter(NAMESPACE, "images_dead_lettered")
SKIPPED = Metrics.counter(NAMESPACE, "images_skipped_incremental")
COPIED = Metrics.counter(NAMESPACE, "images_copied")  # their content had a row already: its features copied


def read(n: int = 1) -> None:
    """`n` images read: the Beam counter, and local progress."""
    from transforms import progress

    READ.inc(n)
    progress.read(n)


def ended(counter, n: int = 1) -> None:
    """`n` images ended as `counter` says (SCORED, DEAD or SKIPPED): the Beam counter, and local progress."""
    from transforms import progress

    counter.inc(n)
    progress.advance(n)


def totals(result) -> dict[str, int]:
    """Each counter's total from a finished pipeline."""
    out = {c.metric_name.name: 0 for c in (READ, SCORED, DEAD, SKIPPED, COPIED)}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        if counter.key.metric.name in out:
            out[counter.key.metric.name] += counter.committed or counter.attempted or 0
    return out


def summary(totals: dict[str, int], seconds: float) -> str:
    """'N read, N scored, ... in S s (R images/s)' from the counters' totals."""
    done = (totals["images_scored"] + totals["images_dead_lettered"] + totals["images_skipped_incremental"]
            + totals["images_copied"])
    copied = f", {totals['images_copied']} copied (same content as a row already)" if totals["images_copied"] else ""
    return (f"{totals['images_read']} images read, {totals['images_scored']} scored, "
            f"{totals['images_dead_lettered']} dead-lettered, {totals['images_skipped_incremental']} skipped "
            f"(already extracted){copied} in {seconds:.1f} s ({done / max(seconds, 1e-9):.1f} images/s)")
