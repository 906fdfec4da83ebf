"""One video source forwarded to its viewers as the sender encoded it: no decoding, no re-encoding.

A viewer receives exactly the frames the phone sent, so it sees the phone's resolution and bitrate at
the cost of copying packets. Forwarding encoded video has two rules that decoded frames do not:
- A viewer can only start (or resume after a gap) on a keyframe. A viewer that joins, switches
  source or fell behind skips frames until the next keyframe and asks the sender for one.
- Frames must not be dropped in the middle of a chain, so each viewer has a short queue; a viewer
  that lets it fill (it stopped reading) loses the queue and resumes at a keyframe, so memory stays
  bounded however slow it is.
- A frame that does not follow on from the one before (packets were lost and given up on) starts a
  gap: every viewer waits for the next keyframe, which is asked for at once.
A source whose frames stop while it is live is stalled (the network dropped, most often): the feed says
so within `stall_after` seconds and keeps asking for a keyframe until frames come again.
Keyframe requests from viewers (their PLI/FIR) and from here reach the sender at most once per
KEYFRAME_INTERVAL while one is outstanding. A feed outlives any one sender connection: when the customer
reconnects, the new track feeds the same feed and viewers carry on without renegotiating, on a
timeline that keeps rising.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import Packet, VideoFrame

from visassist.media.encoded import EncodedFrame, Timeline
from visassist.media.pictures import Pictures

log = logging.getLogger(__name__)

CLOCK_RATE = 90_000
MAX_QUEUE = 30  # frames a viewer may be behind (1 s at 30 fps) before it resumes at a keyframe
KEYFRAME_INTERVAL = 0.5  # seconds: the most often we ask the sender while a request is outstanding
KEYFRAME_RETRY = 1.0  # seconds a waiting viewer waits before asking again

Size = tuple[int, int]


class VideoFeed:
    """The encoded frames of one video source (camera, screen, staff screen) and who watches them."""

    def __init__(self, name: str = "video", on_change: Callable[[Size | None], None] | None = None,
                 on_stall: Callable[[bool], None] | None = None, stall_after: float = 1.0) -> None:
        self.name = name
        self.size: Size | None = None
        self.stalled = False  # live, but no frame for stall_after seconds
        self.stall_after = stall_after
        self.generation = 0  # one per sender track: each starts its own RTP timeline
        self.pictures = Pictures(self.request_keyframe)
        self._on_change = on_change
        self._on_stall = on_stall
        self._viewers: set[FeedTrack] = set()
        self._pump: asyncio.Task[None] | None = None
        self._ask_sender: Callable[[], None] | None = None
        self._requested_at = -1.0
        self._keyframe_at = 0.0
        self._held: VideoFrame | None = None

    @property
    def live(self) -> bool:
        return self._pump is not None and not self._pump.done()

    @property
    def held(self) -> VideoFrame | None:
        """The frozen picture, if any."""
        return self._held

    def attach(self, track: MediaStreamTrack, request_keyframe: Callable[[], None]) -> None:
        """Feed from `track` from now on, replacing any earlier track (a sender who reconnected)."""
        self.detach()
        self.generation += 1
        self.size = None
        self.stalled = False
        self.pictures.reset()
        self._ask_sender = request_keyframe
        self._requested_at = -1.0
        self._pump = asyncio.create_task(self._run(track), name=f"video-feed-{self.name}")

    def detach(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        self._ask_sender = None

    def request_keyframe(self) -> None:
        now = time.monotonic()
        outstanding = self._requested_at > self._keyframe_at
        if self._ask_sender is None or (outstanding and now - self._requested_at < KEYFRAME_INTERVAL):
            return
        self._requested_at = now
        self._ask_sender()

    def publish(self, frame: EncodedFrame) -> None:
        if frame.keyframe:
            self._keyframe_at = time.monotonic()
            if frame.size is not None and frame.size != self.size:
                self.size = frame.size
                if self._on_change is not None:
                    self._on_change(frame.size)
        elif self.size is None:
            self.request_keyframe()  # started without one (its first keyframe was lost)
        elif not frame.continuous:
            for viewer in self._viewers:
                viewer.resync()
            self.request_keyframe()
        self.pictures.add(frame)
        for viewer in list(self._viewers):
            viewer.deliver(frame, self.generation)

    async def picture(self) -> VideoFrame | None:
        """What a snapshot takes: the held picture while frozen, else the newest one."""
        if self._held is not None:
            return self._held
        if not self.live:
            return None
        return await self.pictures.latest()

    async def freeze(self) -> VideoFrame | None:
        """Hold the current picture; returns it, or None when there is nothing to hold."""
        if self._held is None:
            self._held = await self.picture()
        return self._held

    def unfreeze(self) -> None:
        self._held = None

    async def close(self) -> None:
        self.unfreeze()
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        for viewer in list(self._viewers):
            viewer.stop()

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                try:
                    # Before its first picture a source is starting, not stalled.
                    async with asyncio.timeout(None if self.size is None else self.stall_after):
                        frame = await track.recv()
                except TimeoutError:
                    self._stall(True)
                    self.request_keyframe()
                    continue
                if isinstance(frame, EncodedFrame):
                    self.publish(frame)
                    if self.stalled:
                        self._stall(False)
        except MediaStreamError:
            log.info("%s track ended", self.name)
        finally:
            if asyncio.current_task() is self._pump:
                self.size = None
                self.stalled = False
                if self._on_change is not None:
                    self._on_change(None)

    def _stall(self, stalled: bool) -> None:
        if stalled == self.stalled:
            return
        self.stalled = stalled
        log.info("%s %s", self.name, "stalled" if stalled else "flowing again")
        if self._on_stall is not None:
            self._on_stall(stalled)


class FeedTrack(MediaStreamTrack):
    """What the server sends one viewer: the encoded frames of the feed it watches, switchable."""

    kind = "video"

    def __init__(self, feed: VideoFeed) -> None:
        super().__init__()
        self._feed: VideoFeed | None = None
        self._queue: deque[tuple[EncodedFrame, int]] = deque()
        self._wake = asyncio.Event()
        self._want_keyframe = True
        self._timeline = Timeline(CLOCK_RATE)
        self.watch(feed)

    @property
    def feed(self) -> VideoFeed:
        assert self._feed is not None
        return self._feed

    def watch(self, feed: VideoFeed) -> None:
        """Watch `feed` from its next keyframe on (asked for at once)."""
        if feed is self._feed:
            return
        if self._feed is not None:
            self._feed._viewers.discard(self)
        self._feed = feed
        feed._viewers.add(self)
        self._queue.clear()
        self._want_keyframe = True
        feed.request_keyframe()

    def resync(self) -> None:
        """The feed lost frames: go on from its next keyframe (the frames queued are still good)."""
        self._want_keyframe = True

    def request_keyframe(self) -> None:
        """The viewer lost the picture (its PLI or FIR)."""
        if self._feed is not None:
            self._feed.request_keyframe()

    def deliver(self, frame: EncodedFrame, generation: int) -> None:
        if self._want_keyframe and not frame.keyframe:
            return
        if len(self._queue) >= MAX_QUEUE:
            # Not reading: drop the backlog and resume at a keyframe rather than grow.
            self._queue.clear()
            if not frame.keyframe:
                self._want_keyframe = True
                self.feed.request_keyframe()
                return
        self._want_keyframe = False
        self._queue.append((frame, generation))
        self._wake.set()

    async def recv(self) -> Packet[Any]:
        while self.readyState == "live":
            if self._queue:
                frame, generation = self._queue.popleft()
                return self._stamp(frame, generation)
            self._wake.clear()
            try:
                async with asyncio.timeout(KEYFRAME_RETRY):  # no task per frame, unlike wait_for
                    await self._wake.wait()
            except TimeoutError:
                if self._want_keyframe:
                    self.feed.request_keyframe()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        if self._feed is not None:
            self._feed._viewers.discard(self)
        self._queue.clear()
        self._wake.set()

    def _stamp(self, frame: EncodedFrame, generation: int) -> Packet[Any]:
        # One timeline per viewer: a new sender track or another source continues it from now on.
        return frame.packet(self._timeline.stamp((id(self._feed), generation), frame.timestamp, 1))
