"""Progress of a local run (extract, evaluate): images done of those matched, images/s and time left.

On a terminal it is a bar (tqdm); in logs, a line every `every` seconds
(the command itself ends with its summary). It counts in this process
only, which is where a local runner executes every bundle; on Dataflow,
nothing starts it and the Beam counters in the job's UI show progress
instead.
"""
from __future__ import annotations

import logging
import sys
import threading
import time

__all__ = ["start", "advance", "read", "finish"]

log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict | None = None


def start(total: int | None, every: float = 10.0) -> None:
    """Begin counting towards `total` images (None when the inputs cannot be counted up front)."""
    global _state
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, unit="img", desc="extract", file=sys.stderr, dynamic_ncols=True)
    _state = {"total": total, "done": 0, "read": 0, "start": time.monotonic(), "bar": bar, "stop": threading.Event()}
    if bar is None:
        threading.Thread(target=_log_every, args=(_state, every), daemon=True, name="grepq-progress").start()


def _log_every(state: dict, every: float) -> None:
    while not state["stop"].wait(every):
        with _lock:
            line = _line(state)
        log.info("progress: %s", line)


def _line(state: dict) -> str:
    done, total = state["done"], state["total"]
    elapsed = max(time.monotonic() - state["start"], 1e-9)
    rate = done / elapsed
    text = f"{done} of {total} images done" if total else f"{done} images done"
    text += f" ({state['read']} read), {rate:.1f} images/s"
    if total and rate > 0 and done < total:
        text += f", about {(total - done) / rate:.0f} s left"
    return text


def advance(n: int = 1) -> None:
    """`n` more images ended (scored, dead-lettered or skipped); a no-op when no run was started here."""
    with _lock:
        state = _state
        if state is None:
            return
        state["done"] += n
        if state["bar"] is not None:
            state["bar"].update(n)


def read(n: int = 1) -> None:
    """`n` more images read from storage (they end later, in the model stage)."""
    with _lock:
        if _state is not None:
            _state["read"] += n


def finish() -> None:
    global _state
    with _lock:
        state, _state = _state, None
    if state is None:
        return
    state["stop"].set()
    if state["bar"] is not None:
        state["bar"].close()
