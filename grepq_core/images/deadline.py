"""Decode in a worker process that is killed when the image's time budget runs out.

A decoder's time is not bounded by the file's size: a 1.6 MB progressive
JPEG with 10,000 empty scans takes minutes, Pillow cannot be interrupted,
and a thread cannot be stopped. So `decode_in_time` hands the bytes to a
worker process (Python with Pillow and numpy, no torch, kept from one image
to the next) and waits at most `DecodeLimits.max_seconds` for the pixels;
past that it kills the worker and raises ``too_slow``. A worker that dies
(a decoder's crash, the kernel's out-of-memory killer) costs its image a
``decoder_crashed`` dead letter instead of the whole job, and the worker
caps its own address space a little above the memory budget, so a codec
that needs more than `memory_needed` says gets ``too_large`` too.

The pixels come back raw through the pipe, band by band, into the one
array the caller keeps, so neither side holds a second copy. Both reasons
are at stage ``decode``.
"""
from __future__ import annotations

import atexit
import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time

import numpy as np

from grepq_core.errors import ImageError
from grepq_core.images.decode import decode_rgb, opened
from grepq_core.images.limits import DecodeLimits

__all__ = ["decode_in_time"]

_LENGTH = struct.Struct("<Q")
_PIPE_BYTES = 2**20
_STARTUP_SECONDS = 120  # importing numpy and Pillow, on a machine that may be busy
# Address space a worker may take beyond its own and the image's memory budget (libraries map some as they load).
_ADDRESS_SLACK = 512 * 2**20
_WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def decode_in_time(data: bytes, limits: DecodeLimits) -> tuple[np.ndarray, str | None]:
    """`decode_rgb(data, limits)` in a worker process, stopped after `limits.max_seconds`.

    Without a time budget (``max_seconds`` None) it decodes in this process.
    """
    if limits.max_seconds is None:
        return decode_rgb(data, limits)
    worker = _take()
    try:
        return worker.decode(data, limits)
    except BaseException as e:
        if not isinstance(e, ImageError):  # interrupted half-way: the worker's state is unknown
            worker.stop()
        raise
    finally:
        if worker.alive():
            _give(worker)


class _Worker:
    """One worker process and the pipes to it."""

    def __init__(self):
        env = {**os.environ, **_WORKER_ENV}
        self._proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env)
        self._in, self._out = self._proc.stdin.fileno(), self._proc.stdout.fileno()
        for fd in (self._in, self._out):
            _widen(fd)
        if _read_frame(self._out, time.monotonic() + _STARTUP_SECONDS) is None:
            self.stop()
            raise RuntimeError(f"a decode worker ({sys.executable} -m {__name__}) did not start")

    def decode(self, data: bytes, limits: DecodeLimits) -> tuple[np.ndarray, str | None]:
        """The worker's answer; `ImageError` for the decoder's errors, or after stopping a worker that took
        too long or died."""
        deadline = time.monotonic() + limits.max_seconds
        try:
            _write_frame(self._in, json.dumps(_limits_record(limits)).encode())
            _write_frame(self._in, data)
            reply = _read_frame(self._out, deadline)
            if reply is not None:
                reply = json.loads(reply)
                if "error" in reply:
                    raise ImageError(*reply["error"])
                pixels = np.empty((reply["height"], reply["width"], 3), np.uint8)
                if _read_into(self._out, memoryview(pixels).cast("B"), deadline):
                    return pixels, reply["ignored"]
        except BrokenPipeError:
            pass
        if time.monotonic() < deadline:  # the pipe closed: the worker is gone
            ended = _how_it_ended(self._proc.wait())
            self.close()
            raise ImageError("decoder_crashed", f"the decoder died ({ended})")
        self.stop()
        raise ImageError("too_slow", f"decoding took more than the {limits.max_seconds:g} s allowed per image")

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self) -> None:
        self._proc.kill()
        self.close()

    def close(self) -> None:
        """Let the worker end: it exits when its input closes (or is killed if it does not)."""
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()


def _widen(fd: int) -> None:
    """A pipe buffer of 1 MiB where the system allows it (64 KiB by default): a tenth of the wake-ups per image."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (OSError, AttributeError):
        pass


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        return f"signal {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


_IDLE: list[_Worker] = []
_IDLE_LOCK = threading.Lock()


def _take() -> _Worker:
    """An idle worker that is still alive, or a new one: one per thread decoding at the same time."""
    while True:
        with _IDLE_LOCK:
            worker = _IDLE.pop() if _IDLE else None
        if worker is None:
            return _Worker()
        if worker.alive():
            return worker
        worker.close()


def _give(worker: _Worker) -> None:
    with _IDLE_LOCK:
        _IDLE.append(worker)


@atexit.register
def _close_idle() -> None:
    with _IDLE_LOCK:
        idle = list(_IDLE)
        _IDLE.clear()
    for worker in idle:
        worker.close()


def _limits_record(limits: DecodeLimits) -> dict:
    return {"max_pixels": limits.max_pixels, "max_memory": limits.max_memory,
            "later_bytes_per_pixel": limits.later_bytes_per_pixel}


def _write_frame(fd: int, payload: bytes) -> None:
    _write_all(fd, _LENGTH.pack(len(payload)))
    _write_all(fd, payload)


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _read_frame(fd: int, deadline: float | None) -> bytes | None:
    """One length-prefixed message, or None if it did not come before `deadline` (None: no limit) or the
    pipe closed."""
    head = bytearray(_LENGTH.size)
    if not _read_into(fd, memoryview(head), deadline):
        return None
    body = bytearray(_LENGTH.unpack(head)[0])
    return bytes(body) if _read_into(fd, memoryview(body), deadline) else None


def _read_into(fd: int, view: memoryview, deadline: float | None) -> bool:
    """Fill `view` from `fd`; False if the deadline passes or the pipe closes first."""
    got = 0
    while got < len(view):
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return False
        n = os.readv(fd, [view[got:]])
        if n == 0:
            return False
        got += n
    return True


def _serve() -> None:
    """The worker: decode requests from stdin, answer on stdout, until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops its workers
    reply_fd = os.dup(1)
    os.dup2(2, 1)  # stray prints from a library must not corrupt the replies
    _write_frame(reply_fd, b"ready")
    while True:
        request = _read_frame(0, None)
        data = _read_frame(0, None)
        if request is None or data is None:
            return
        limits = DecodeLimits(**json.loads(request))
        _cap_address_space(limits.max_memory)
        try:
            with opened(data, limits) as upright:
                _write_frame(reply_fd, json.dumps({"width": upright.width, "height": upright.height,
                                                   "ignored": upright.ignored}).encode())
                try:
                    for _, band in upright.bands():
                        _write_all(reply_fd, np.ascontiguousarray(band))
                except BaseException:
                    os._exit(3)  # the reply is half written: the parent sees the worker die
        except ImageError as e:
            _write_frame(reply_fd, json.dumps({"error": [e.reason, e.detail, e.stage]}).encode())
        _give_back_memory()


def _give_back_memory() -> None:
    """Return freed memory to the system (glibc keeps it otherwise): an idle worker does not hold its last
    large image."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc's; looked up once, not per image


def _cap_address_space(max_memory: int | None) -> None:
    """Allocations past what this process maps now, the budget and some slack fail (MemoryError: too_large)."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = hard
    if max_memory is not None:
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * resource.getpagesize()
        soft = mapped + max_memory + _ADDRESS_SLACK
        soft = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


if __name__ == "__main__":
    _serve()
