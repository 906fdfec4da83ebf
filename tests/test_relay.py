"""The video fan-out: newest frame only, freezing, switching sources."""

from __future__ import annotations

import asyncio

import numpy as np
from av import VideoFrame

from visassist.media.relay import FrameSource, ViewerTrack


def frame(value: int, width: int = 64, height: int = 48) -> VideoFrame:
    """A decoder-like frame (yuv420p) whose luma is `value` everywhere."""
    planes = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    planes[:height] = value
    return VideoFrame.from_ndarray(planes, format="yuv420p")


def value_of(f: VideoFrame) -> int:
    return int(f.to_ndarray(format="yuv420p")[0, 0])


async def test_a_slow_viewer_gets_the_newest_frame_not_a_backlog() -> None:
    source = FrameSource("camera")
    viewer = ViewerTrack(source)
    for value in range(10, 110, 10):
        source.publish(frame(value))
    assert value_of(await viewer.recv()) == 100
    waiting = asyncio.ensure_future(viewer.recv())
    await asyncio.sleep(0.01)
    assert not waiting.done(), "nothing newer yet: the viewer waits"
    source.publish(frame(7))
    assert value_of(await asyncio.wait_for(waiting, 1)) == 7
    await source.close()


async def test_timestamps_rise_on_one_clock() -> None:
    source = FrameSource("camera")
    stamps = []
    for value in range(5):
        f = frame(value)
        f.pts = 0  # whatever the sender said
        source.publish(f)
        assert source.frame is not None and source.frame.pts is not None
        stamps.append(source.frame.pts)
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    await source.close()


async def test_freeze_holds_the_frame_for_viewers_and_snapshots() -> None:
    source = FrameSource("camera")
    source.publish(frame(50))
    held = source.freeze()
    assert held is not None and value_of(held) == 50
    assert source.frame is held, "snapshots take the held frame"
    viewer = ViewerTrack(source)
    seen = set()
    for _ in range(3):  # re-sent a few times a second, as copies identical to the held frame
        got = await asyncio.wait_for(viewer.recv(), 2)
        assert np.array_equal(got.to_ndarray(format="yuv420p"), held.to_ndarray(format="yuv420p"))
        seen.add(got.pts)
    assert len(seen) == 3
    source.unfreeze()
    source.publish(frame(120))
    assert value_of(await asyncio.wait_for(viewer.recv(), 1)) == 120
    await source.close()


async def test_a_viewer_switches_source_without_waiting_for_the_old_one() -> None:
    camera, screen = FrameSource("camera"), FrameSource("screen")
    viewer = ViewerTrack(camera)
    waiting = asyncio.ensure_future(viewer.recv())
    await asyncio.sleep(0.01)
    screen.publish(frame(33, 128, 72))
    viewer.watch(screen)
    got = await asyncio.wait_for(waiting, 1)
    assert (got.width, value_of(got)) == (128, 33)
    await camera.close()
    await screen.close()
