"""A bounded fan-out of the customer's video: the newest decoded frame, never a backlog.

aiortc's MediaRelay gives every viewer an unbounded queue, so one slow viewer grows memory without
limit. Here a viewer always gets the newest frame there is and skips what it was too slow to take.
The source outlives any one customer connection: when the customer reconnects, the new track feeds
the same source and viewers carry on without renegotiating.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from fractions import Fraction

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

log = logging.getLogger(__name__)

CLOCK_RATE = 90_000
TIME_BASE = Fraction(1, CLOCK_RATE)


class FrameSource:
    """The newest frame of one session's video and a way to wait for the next one."""

    def __init__(self, on_change: Callable[[VideoFrame | None], None] | None = None) -> None:
        self._frame: VideoFrame | None = None
        self._seq = 0
        self._next: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pump: asyncio.Task[None] | None = None
        self._epoch = time.monotonic()
        self._last_pts = -1
        self._on_change = on_change
        self._announced = False

    @property
    def frame(self) -> VideoFrame | None:
        return self._frame

    @property
    def live(self) -> bool:
        return self._pump is not None and not self._pump.done()

    def attach(self, track: MediaStreamTrack) -> None:
        """Feed from `track` from now on, replacing any earlier track (a customer who reconnected)."""
        self.detach()
        self._announced = False
        self._pump = asyncio.create_task(self._run(track), name="frame-source")

    def detach(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    async def close(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if not self._next.done():
            self._next.cancel()

    def publish(self, frame: VideoFrame) -> None:
        # One clock per session, so viewers see steadily rising timestamps across customer reconnects.
        pts = int((time.monotonic() - self._epoch) * CLOCK_RATE)
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = TIME_BASE
        resized = self._frame is not None and (self._frame.width, self._frame.height) != (
            frame.width, frame.height)
        announce = not self._announced or resized
        self._announced = True
        self._frame = frame
        self._seq += 1
        waiting, self._next = self._next, asyncio.get_running_loop().create_future()
        if not waiting.done():
            waiting.set_result(None)
        if announce and self._on_change is not None:
            self._on_change(frame)

    async def next_frame(self, after: int) -> tuple[int, VideoFrame]:
        """The newest frame newer than sequence number `after`, waiting for one if needed."""
        while self._seq <= after or self._frame is None:
            await asyncio.shield(self._next)
        return self._seq, self._frame

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame):
                    self.publish(frame)
        except MediaStreamError:
            log.info("customer video track ended")
        finally:
            if self._on_change is not None and asyncio.current_task() is self._pump:
                self._on_change(None)


class ViewerTrack(MediaStreamTrack):
    """What the server sends one viewer: the source's newest frame each time the encoder asks."""

    kind = "video"

    def __init__(self, source: FrameSource) -> None:
        super().__init__()
        self._source = source
        self._seen = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._seen, frame = await self._source.next_frame(self._seen)
        return frame
