"""A bounded pool for reading pictures off the event loop.

Threads, not processes, by measurement (scripts/bench-vision): onnxruntime and OpenCV release the GIL
while they compute, so a thread uses the cores as well as a process would, without loading the models
again in each process or copying every picture (a 12 MP photo is 36 MB) between processes.

Its threads run at a lower CPU priority (nice 10) than the rest of the server, and so do the
onnxruntime threads they start (Linux threads inherit it): while a picture is read, the event loop,
the media and the next snapshot's storing still get the cores first.

Bounded twice: at most `workers` readings run and `queue_limit` wait; past that a new one is refused
at once (Busy) instead of piling up behind the others. A reading that outlives `timeout` is given up
on (TimedOut). A thread cannot be stopped, so it keeps its place until it really finishes: the bounds
count what the CPU is doing, not what callers still wait for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
NICE = 10


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: run as is
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


class Busy(Exception):
    """Every worker is busy and the queue is full."""


class TimedOut(Exception):
    """The reading took longer than the pool's timeout."""


class VisionPool:
    def __init__(self, workers: int = 1, queue_limit: int = 4, timeout: float = 10.0) -> None:
        self.workers = workers
        self.queue_limit = queue_limit
        self.timeout = timeout
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="vision",
                                                               initializer=_lower_priority)
        self._pending = 0  # running or waiting

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, work: Callable[[], T]) -> T:
        if self._pending >= self.workers + self.queue_limit:
            raise Busy(f"{self._pending} pictures are being read already")
        self._pending += 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, work)
        future.add_done_callback(self._done)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            raise TimedOut(f"reading took longer than {self.timeout:g} s") from None

    def _done(self, _: object) -> None:
        self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
