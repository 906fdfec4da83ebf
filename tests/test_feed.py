"""Forwarding one video source: keyframes for newcomers, bounded viewers, one rising timeline, pictures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiortc.mediastreams import MediaStreamTrack

from tests.utils import MARKER_ID, QuietTrack, detect_markers, vp8_frames
from visassist.media import feed as feed_module
from visassist.media import pictures as pictures_module
from visassist.media.encoded import EncodedFrame
from visassist.media.feed import MAX_QUEUE, FeedTrack, VideoFeed


class Sender:
    """Stands for the phone: counts the keyframes asked of it."""

    def __init__(self) -> None:
        self.asked = 0

    def __call__(self) -> None:
        self.asked += 1


@pytest.fixture
async def live() -> AsyncIterator[tuple[VideoFeed, Sender]]:
    feed, sender = VideoFeed("camera"), Sender()
    feed.attach(QuietTrack(), sender)
    yield feed, sender
    await feed.close()


def delta(timestamp: int) -> EncodedFrame:
    return EncodedFrame(data=b"\x01delta", timestamp=timestamp, clock_rate=90_000, keyframe=False)


def key(timestamp: int, size: tuple[int, int] = (320, 240)) -> EncodedFrame:
    return EncodedFrame(data=b"\x00key", timestamp=timestamp, clock_rate=90_000, keyframe=True, size=size)


async def test_a_new_viewer_starts_at_a_keyframe_it_asks_for(live: tuple[VideoFeed, Sender]) -> None:
    feed, sender = live
    viewer = FeedTrack(feed)
    assert sender.asked == 1, "joining asks the phone for a keyframe at once"
    feed.publish(delta(0))
    feed.publish(delta(3000))
    waiting = asyncio.ensure_future(viewer.recv())
    await asyncio.sleep(0.01)
    assert not waiting.done(), "frames before a keyframe cannot be decoded: skipped"
    feed.publish(key(6000))
    feed.publish(delta(9000))
    first = await asyncio.wait_for(waiting, 1)
    assert bytes(first) == b"\x00key", "exactly the bytes the phone sent"
    second = await viewer.recv()
    assert bytes(second) == b"\x01delta" and second.pts - first.pts == 3000, "the phone's spacing is kept"
    viewer.stop()


async def test_keyframe_requests_are_rate_limited_while_one_is_outstanding(
    live: tuple[VideoFeed, Sender], monkeypatch: pytest.MonkeyPatch
) -> None:
    feed, sender = live
    viewers = [FeedTrack(feed) for _ in range(5)]
    for viewer in viewers:
        viewer.request_keyframe()  # their PLIs
    assert sender.asked == 1, "one request covers everyone waiting"
    feed.publish(key(0))
    FeedTrack(feed)
    assert sender.asked == 2, "answered: the next newcomer may ask again at once"
    monkeypatch.setattr(feed_module, "KEYFRAME_INTERVAL", 0.0)
    feed.request_keyframe()
    assert sender.asked == 3, "an unanswered request is repeated after the interval"


async def test_a_viewer_that_never_reads_stays_bounded_and_resumes_at_a_keyframe(
    live: tuple[VideoFeed, Sender],
) -> None:
    feed, sender = live
    viewer = FeedTrack(feed)
    feed.publish(key(0))
    for index in range(1, 1000):
        feed.publish(delta(index * 3000))
        assert len(viewer._queue) <= MAX_QUEUE
    asked = sender.asked
    assert asked >= 2, "the overflow asked for a keyframe to resume on"
    feed.publish(key(1000 * 3000))
    feed.publish(delta(1001 * 3000))
    resumed = await viewer.recv()
    assert bytes(resumed) == b"\x00key", "the backlog was dropped; the viewer resumes at the keyframe"
    viewer.stop()


async def test_one_rising_timeline_across_a_reconnect_and_a_switch(live: tuple[VideoFeed, Sender]) -> None:
    feed, _ = live
    screen = VideoFeed("screen")
    screen.attach(QuietTrack(), lambda: None)
    viewer = FeedTrack(feed)
    stamps = []
    feed.publish(key(500_000))
    feed.publish(delta(503_000))
    stamps += [(await viewer.recv()).pts, (await viewer.recv()).pts]
    feed.attach(QuietTrack(), lambda: None)  # the phone reconnected: its timestamps start again at 0
    feed.publish(key(0))
    stamps.append((await viewer.recv()).pts)
    viewer.watch(screen)
    screen.publish(delta(0))
    screen.publish(key(42))
    stamps.append((await viewer.recv()).pts)
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    viewer.stop()
    await screen.close()


async def test_the_size_is_read_from_keyframes_and_announced(live: tuple[VideoFeed, Sender]) -> None:
    feed, _ = live
    announced: list[object] = []
    feed._on_change = announced.append
    feed.publish(key(0, (640, 360)))
    feed.publish(delta(3000))
    feed.publish(key(6000, (640, 360)))
    feed.publish(key(9000, (1280, 720)))
    assert announced == [(640, 360), (1280, 720)]
    assert feed.size == (1280, 720)


async def test_a_picture_is_decoded_only_when_asked_for(live: tuple[VideoFeed, Sender]) -> None:
    feed, sender = live
    frames = vp8_frames(40, 320, 240)
    for frame in frames:
        feed.publish(frame)
    assert feed.pictures._latest is None, "nothing decoded while nobody needs a picture"
    picture = await feed.picture()
    assert picture is not None and (picture.width, picture.height) == (320, 240)
    assert MARKER_ID in detect_markers(picture.to_ndarray(format="bgr24"))
    assert sender.asked == 0, "the chain since the keyframe was intact: no keyframe needed"


async def test_a_picture_after_a_long_chain_asks_for_a_keyframe(
    live: tuple[VideoFeed, Sender], monkeypatch: pytest.MonkeyPatch
) -> None:
    feed, sender = live
    monkeypatch.setattr(pictures_module, "MAX_PENDING", 10)
    frames = vp8_frames(30, 320, 240, keyframe_every=20)
    for frame in frames[:15]:  # a keyframe, then more deltas than we keep
        feed.publish(frame)
    asking = asyncio.ensure_future(feed.picture())
    await asyncio.sleep(0.05)
    assert sender.asked == 1 and not asking.done(), "waits for the keyframe it asked for"
    for frame in frames[15:]:  # the keyframe at 20 arrives
        feed.publish(frame)
    picture = await asyncio.wait_for(asking, 2)
    assert picture is not None and MARKER_ID in detect_markers(picture.to_ndarray(format="bgr24"))


async def test_no_picture_when_no_keyframe_comes(
    live: tuple[VideoFeed, Sender], monkeypatch: pytest.MonkeyPatch
) -> None:
    feed, sender = live
    monkeypatch.setattr(pictures_module, "KEYFRAME_WAIT", 0.1)
    feed.publish(delta(0))
    assert await feed.picture() is None
    assert sender.asked >= 1


async def test_freeze_holds_one_picture_for_snapshots(live: tuple[VideoFeed, Sender]) -> None:
    feed, _ = live
    frames = vp8_frames(20, 320, 240)
    for frame in frames[:5]:
        feed.publish(frame)
    held = await feed.freeze()
    assert held is not None and feed.held is held
    for frame in frames[5:]:
        feed.publish(frame)
    assert await feed.picture() is held, "snapshots take the held picture"
    feed.unfreeze()
    assert await feed.picture() is not held


class Phone(MediaStreamTrack):
    """The phone's track as the server receives it: frames when the network lets them through."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.frames: asyncio.Queue[EncodedFrame] = asyncio.Queue()

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        return await self.frames.get()


async def test_a_source_whose_frames_stop_is_stalled_and_resumes_at_a_keyframe() -> None:
    stalls: list[bool] = []
    feed, sender, phone = VideoFeed("camera", on_stall=stalls.append, stall_after=0.2), Sender(), Phone()
    feed.attach(phone, sender)
    viewer = FeedTrack(feed)
    phone.frames.put_nowait(key(0))
    phone.frames.put_nowait(delta(3000))
    assert bytes(await viewer.recv()) == b"\x00key" and bytes(await viewer.recv()) == b"\x01delta"
    asked = sender.asked
    await asyncio.sleep(0.3)  # the network dropped: no frame for longer than stall_after
    assert stalls == [True] and feed.stalled and feed.live
    assert sender.asked > asked, "the phone is asked for a keyframe while its frames are stalled"
    # Back: the first frame does not follow on from the last one seen (frames were lost in between).
    phone.frames.put_nowait(EncodedFrame(data=b"\x01lost", timestamp=90_000, clock_rate=90_000,
                                         keyframe=False, continuous=False))
    phone.frames.put_nowait(delta(93_000))
    phone.frames.put_nowait(key(96_000))
    resumed = await asyncio.wait_for(viewer.recv(), 1)
    assert bytes(resumed) == b"\x00key", "viewers skip what cannot be decoded and resume at a keyframe"
    assert stalls == [True, False] and not feed.stalled
    viewer.stop()
    await feed.close()


async def test_one_picture_converted_by_many_at_once_is_converted_safely() -> None:
    """Every page fetches the frozen picture at once, and snapshots read the same frame: conversions
    of one shared frame must not run together (ffmpeg crashed the process when they did)."""
    import av
    import numpy as np

    from tests.utils import marker_image
    from visassist.media.pictures import to_bgr

    image = marker_image(1280, 720)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24").reformat(format="yuv420p")
    converted = await asyncio.gather(*(to_bgr(frame) for _ in range(64)))
    assert all(np.array_equal(c, converted[0]) for c in converted)
    assert MARKER_ID in detect_markers(converted[0])
