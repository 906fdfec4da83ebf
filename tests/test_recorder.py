"""The recorder muxes forwarded frames as they are: sizes change and sources switch in one playable file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av

from tests.utils import MARKER_ID, QuietTrack, detect_markers, vp8_frames
from visassist.media.feed import VideoFeed
from visassist.media.recorder import Recorder


async def publish(feed: VideoFeed, width: int, height: int, count: int = 20) -> None:
    for frame in vp8_frames(count, width, height):
        feed.publish(frame)
        await asyncio.sleep(0.002)  # the recorder reads as a viewer does


async def test_a_recording_follows_size_changes_and_a_switch_of_source(tmp_path: Path) -> None:
    camera, screen = VideoFeed("camera"), VideoFeed("screen")
    camera.attach(QuietTrack(), lambda: None)
    screen.attach(QuietTrack(), lambda: None)
    recorder = Recorder(tmp_path / "r" / "session.webm", camera, lambda: [])
    await publish(camera, 320, 240)
    await publish(camera, 640, 480)  # the phone's encoder stepped up
    recorder.watch(screen)  # the agent watches the shared screen now
    await publish(screen, 480, 360)
    done = await recorder.stop()
    assert done is not None and (done.width, done.height) == (320, 240)
    assert done.size_bytes == done.path.stat().st_size > 0

    with av.open(str(done.path)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    sizes = [(f.shape[1], f.shape[0]) for f in frames]
    assert sizes == [(320, 240)] * 20 + [(640, 480)] * 20 + [(480, 360)] * 20, "every frame, in order"
    assert all(MARKER_ID in detect_markers(frames[i]) for i in (5, 25, 45))
    await camera.close()
    await screen.close()


async def test_nothing_is_kept_when_no_video_came(tmp_path: Path) -> None:
    camera = VideoFeed("camera")
    recorder = Recorder(tmp_path / "r" / "session.webm", camera, lambda: [])
    await asyncio.sleep(0.05)
    assert await recorder.stop() is None
    assert not (tmp_path / "r" / "session.webm").exists()
