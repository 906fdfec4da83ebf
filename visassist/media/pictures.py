"""Pictures from a forwarded video stream, decoded only when someone needs one.

Snapshots, the frozen picture and the HD fallback need a decoded frame; viewers do not. Decoding
720p30 VP8 all the time costs ~6% of a core per source on these machines (~1.9 ms a frame), more than
forwarding the whole session, so we decode on demand (scripts/bench-media measures both):

- Cold (the usual state): the frames since the last keyframe wait undecoded, at most MAX_PENDING of
  them. A picture asked for while that chain is intact costs decoding the chain (a few ms to ~150 ms,
  in a worker thread); once the chain grew too long we ask the sender for a keyframe and decode that.
- Warm: after a picture was asked for, every frame is decoded as it arrives for WARM_SECONDS, so an
  agent taking several snapshots in a row, or holding a freeze, waits for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import cast

import av
from av import VideoFrame

from visassist.media.compose import Image
from visassist.media.encoded import EncodedFrame

log = logging.getLogger(__name__)

# A picture is shared: the held frame is fetched by every page at once, and snapshots read the same
# newest frame. PyAV converts a frame with a scaler the frame itself keeps, and two threads converting
# one frame at once crash ffmpeg (a segfault, seen with two pages fetching the frozen picture).
_converting = threading.Lock()


async def to_bgr(frame: VideoFrame) -> Image:
    """`frame` as a BGR image, converted in a worker thread, one conversion at a time."""
    def convert() -> Image:
        with _converting:
            return cast(Image, frame.to_ndarray(format="bgr24"))
    return await asyncio.to_thread(convert)


MAX_PENDING = 90  # frames (3 s at 30 fps): the longest chain we would decode to answer one request
MAX_PENDING_BYTES = 4 * 1024 * 1024
WARM_SECONDS = 20.0
KEYFRAME_WAIT = 2.0


class Pictures:
    """The newest decoded picture of one stream, on request."""

    def __init__(self, request_keyframe: Callable[[], None]) -> None:
        self._request_keyframe = request_keyframe
        self._decoder = av.CodecContext.create("vp8", "r")
        self._pending: list[EncodedFrame] = []
        self._pending_bytes = 0
        self._intact = False  # the decoder's state plus _pending decode to the newest frame
        self._latest: VideoFrame | None = None
        self._warm_until = 0.0
        self._lock = asyncio.Lock()
        self._keyframe: asyncio.Future[None] | None = None
        self._draining: asyncio.Task[None] | None = None

    def reset(self) -> None:
        """A new sender: nothing decoded so far belongs to its stream."""
        self._pending.clear()
        self._pending_bytes = 0
        self._intact = False
        self._latest = None

    def add(self, frame: EncodedFrame) -> None:
        if frame.keyframe:
            self._pending = [frame]
            self._pending_bytes = len(frame.data)
            self._intact = True
            if self._keyframe is not None and not self._keyframe.done():
                self._keyframe.set_result(None)
        elif self._intact and not frame.continuous:
            self._pending.clear()
            self._pending_bytes = 0
            self._intact = False  # frames were lost: the next picture needs a keyframe
        elif self._intact:
            self._pending.append(frame)
            self._pending_bytes += len(frame.data)
            if len(self._pending) > MAX_PENDING or self._pending_bytes > MAX_PENDING_BYTES:
                self._pending.clear()
                self._pending_bytes = 0
                self._intact = False  # too long to catch up on: wait for the next keyframe
        if self._intact and time.monotonic() < self._warm_until and (
                self._draining is None or self._draining.done()):
            self._draining = asyncio.create_task(self._drain(), name="pictures-drain")

    async def latest(self) -> VideoFrame | None:
        """The newest picture, decoding what it takes; None when no picture came within KEYFRAME_WAIT."""
        self._warm_until = time.monotonic() + WARM_SECONDS
        if not self._intact:
            if self._keyframe is None or self._keyframe.done():
                self._keyframe = asyncio.get_running_loop().create_future()
            self._request_keyframe()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._keyframe), KEYFRAME_WAIT)
            if not self._intact:
                return None
        await self._drain()
        return self._latest

    async def _drain(self) -> None:
        async with self._lock:
            while self._pending and self._intact:
                batch, self._pending = self._pending, []
                self._pending_bytes = 0
                picture, ok = await asyncio.get_running_loop().run_in_executor(None, self._decode, batch)
                if picture is not None:
                    self._latest = picture
                if not ok and not (self._pending and self._pending[0].keyframe):
                    self._intact = False  # a broken chain: the next picture needs a keyframe

    def _decode(self, batch: list[EncodedFrame]) -> tuple[VideoFrame | None, bool]:
        """In a worker thread: decode `batch` in order; the last picture, and whether all decoded."""
        picture = None
        for frame in batch:
            try:
                for decoded in self._decoder.decode(av.Packet(frame.data)):
                    picture = decoded
            except av.FFmpegError as exc:
                log.info("could not decode a frame for a picture: %s", exc)
                return picture, False
        return picture, True
