"""A bounded fan-out of one video source: the newest decoded frame, never a backlog.

aiortc's MediaRelay gives every viewer an unbounded queue, so one slow viewer grows memory without
limit. Here a viewer always gets the newest frame there is and skips what it was too slow to take.
A source outlives any one sender connection: when the customer reconnects, the new track feeds the
same source and viewers carry on without renegotiating. A source can be frozen: viewers then get the
held frame (re-sent a few times a second, so their decoders keep showing it) and snapshots use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

log = logging.getLogger(__name__)

CLOCK_RATE = 90_000
TIME_BASE = Fraction(1, CLOCK_RATE)
HELD_FPS = 5


class FrameSource:
    """The newest frame of one video source and a way to wait for the next one."""

    def __init__(self, name: str = "video",
                 on_change: Callable[[VideoFrame | None], None] | None = None) -> None:
        self.name = name
        self._frame: VideoFrame | None = None
        self._seq = 0
        self._next: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pump: asyncio.Task[None] | None = None
        self._holder: asyncio.Task[None] | None = None
        self._held: VideoFrame | None = None
        self._epoch = time.monotonic()
        self._last_pts = -1
        self._on_change = on_change
        self._announced = False

    @property
    def frame(self) -> VideoFrame | None:
        """The frame a snapshot takes: the held one while frozen, else the newest."""
        return self._held if self._held is not None else self._frame

    @property
    def live(self) -> bool:
        return self._pump is not None and not self._pump.done()

    def attach(self, track: MediaStreamTrack) -> None:
        """Feed from `track` from now on, replacing any earlier track (a sender who reconnected)."""
        self.detach()
        self._announced = False
        self._pump = asyncio.create_task(self._run(track), name=f"frame-source-{self.name}")

    def detach(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    def freeze(self) -> VideoFrame | None:
        """Hold the current frame; returns it, or None when there is nothing to hold."""
        if self._held is None and self._frame is not None:
            self._held = self._frame
            self._holder = asyncio.create_task(self._hold(), name=f"frame-hold-{self.name}")
        return self._held

    def unfreeze(self) -> None:
        self._held = None
        if self._holder is not None:
            self._holder.cancel()
            self._holder = None

    async def close(self) -> None:
        self.unfreeze()
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if not self._next.done():
            self._next.cancel()

    def changed(self) -> asyncio.Future[None]:
        """Resolves when the next frame is published."""
        return self._next

    def publish(self, frame: VideoFrame) -> None:
        # One clock per source, so viewers see steadily rising timestamps across reconnects.
        pts = max(int((time.monotonic() - self._epoch) * CLOCK_RATE), self._last_pts + 1)
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

    def latest(self, after: int) -> tuple[int, VideoFrame] | None:
        if self._seq > after and self._frame is not None:
            return self._seq, self._frame
        return None

    async def _hold(self) -> None:
        # Viewers' encoders are fed copies of the held frame: the encoder reads a frame in a worker
        # thread, so one frame object must never be re-stamped while another viewer encodes it.
        while self._held is not None:
            held = self._held
            copy = VideoFrame.from_ndarray(held.to_ndarray(format="yuv420p"), format="yuv420p")
            self.publish(copy)
            await asyncio.sleep(1 / HELD_FPS)

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame) and self._held is None:
                    self.publish(frame)
        except MediaStreamError:
            log.info("%s track ended", self.name)
        finally:
            if self._on_change is not None and asyncio.current_task() is self._pump:
                self._on_change(None)


class ViewerTrack(MediaStreamTrack):
    """What the server sends one viewer: the newest frame of the source it watches, switchable."""

    kind = "video"

    def __init__(self, source: FrameSource) -> None:
        super().__init__()
        self._source = source
        self._seen = 0
        self._switched = asyncio.Event()

    @property
    def source(self) -> FrameSource:
        return self._source

    def watch(self, source: FrameSource) -> None:
        if source is not self._source:
            self._source = source
            self._seen = 0
            self._switched.set()

    async def recv(self) -> VideoFrame:
        while self.readyState == "live":
            newest = self._source.latest(self._seen)
            if newest is not None:
                self._seen, frame = newest
                return frame
            if self._source.changed().cancelled():  # the source was closed with its room
                break
            self._switched.clear()
            switched: asyncio.Future[Any] = asyncio.ensure_future(self._switched.wait())
            published: asyncio.Future[Any] = asyncio.shield(self._source.changed())
            try:
                await asyncio.wait({published, switched}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                switched.cancel()
                published.cancel()
        raise MediaStreamError
