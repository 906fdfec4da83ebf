"""Reading what the camera sees and blurring who it should not see, on the server's own CPU.

faces.py blurs faces before a picture is stored; ocr.py (RapidOCR), codes.py (zxing-cpp) and
patterns.py read labels; pool.py keeps that work off the event loop and bounded; reading.py puts one
reading together. Vision, below, is what the rest of the server uses. Every model ships inside a
package or in models/: nothing is downloaded at run time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import Any

from visassist.media.compose import Image
from visassist.vision.faces import FaceBlur
from visassist.vision.ocr import TextReader
from visassist.vision.patterns import FieldPattern
from visassist.vision.pool import Busy, TimedOut, VisionPool
from visassist.vision.reading import Reading, Region, read_picture

__all__ = ["Busy", "TimedOut", "Vision"]

log = logging.getLogger(__name__)


# One copy of each model per process, however many apps (tests build many) use them.
@functools.cache
def _faces() -> FaceBlur:
    return FaceBlur()


@functools.cache
def _reader(threads: int) -> TextReader:
    return TextReader(threads)


class Vision:
    def __init__(self, *, blur_faces: bool, read_labels: bool, patterns: tuple[FieldPattern, ...],
                 queue_limit: int = 4, timeout: float = 10.0, threads: int = 2) -> None:
        self.blur_faces = blur_faces
        self.read_labels = read_labels
        self.patterns = patterns
        self.faces = _faces()
        self.reader = _reader(threads)
        self.pool = VisionPool(workers=1, queue_limit=queue_limit, timeout=timeout)
        self.tasks: set[asyncio.Task[None]] = set()  # snapshots being read in the background

    def blur(self, image: Image) -> tuple[Image, int]:
        """CPU work on the snapshot's own thread: the picture as it may be stored, and faces blurred."""
        return self.faces.blur(image) if self.blur_faces else (image, 0)

    async def read(self, image: Image, region: Region | None = None) -> Reading:
        """Raises Busy or TimedOut (pool.py)."""
        return await self.pool.run(lambda: read_picture(image, self.reader, self.patterns, region))

    async def warm_up(self) -> None:
        """Load the models (a second or two, once per process) before the server answers: loading
        holds the GIL for moments that would stall live calls. The OCR engine is made on the pool's own
        thread, so its onnxruntime threads share that thread's lower priority."""
        if self.blur_faces:
            await asyncio.to_thread(self.faces.warm_up)
        if self.read_labels:
            await self.pool.run(self.reader.warm_up)

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("vision: %s", task.exception(), exc_info=task.exception())

    async def close(self) -> None:
        """At shutdown: readings under way are dropped (their snapshots are stored; only the chips
        are lost), not waited for."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.pool.close()
