"""Real headless Chromium for the browser tests and the benchmark: launch flags and a fake camera file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import av
import numpy as np

from tests.utils import marker_image

CHROMIUM = os.environ.get("VISASSIST_CHROMIUM", "/usr/bin/chromium")

# Headless as root with no network, plus fake media devices and WebRTC on loopback.
BASE_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


def write_marker_y4m(path: Path, width: int = 640, height: int = 480, frames: int = 30) -> Path:
    """A y4m clip of the marker scene for --use-file-for-fake-video-capture (Chromium loops it)."""
    image = marker_image(width, height)
    with av.open(str(path), mode="w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def launch_options(camera_file: Path | None, *, fake_devices: bool = True,
                   grant_camera: bool = True) -> dict[str, Any]:
    """Without grant_camera the permission prompt is dismissed, as when a person taps Block."""
    args = list(BASE_FLAGS)
    if fake_devices:
        args.append("--use-fake-device-for-media-stream")
    if grant_camera:
        args.append("--use-fake-ui-for-media-stream")
    if camera_file is not None:
        args.append(f"--use-file-for-fake-video-capture={camera_file}")
    return {"executable_path": CHROMIUM, "headless": True, "args": args}
