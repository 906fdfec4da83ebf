"""Real headless Chromium for the browser tests and the benchmark: launch flags and a fake camera file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from playwright.async_api import Page

from tests.utils import decode_png, marker_image

CHROMIUM = os.environ.get("VISASSIST_CHROMIUM", "/usr/bin/chromium")

# Headless as root with no network, plus fake media devices and WebRTC on loopback.
BASE_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


def write_marker_y4m(path: Path, width: int = 640, height: int = 480, frames: int = 30) -> Path:
    """A y4m clip of the marker scene for --use-file-for-fake-video-capture (Chromium loops it).

    A white block moves along the bottom edge, so consecutive live frames differ (a frozen one does not).
    """
    scene = marker_image(width, height)
    block = height // 10
    with av.open(str(path), mode="w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            image = scene.copy()
            x = width // 2 + (index * (width // 2 - block)) // max(1, frames - 1)
            image[height - 2 * block:height - block, x:x + block] = 255
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def launch_options(camera_file: Path | None, *, fake_devices: bool = True,
                   grant_camera: bool = True, cameras: int = 1, mdns: bool = False) -> dict[str, Any]:
    """Without grant_camera the permission prompt is dismissed, as when a person taps Block. With mdns,
    pages that have no camera permission hide their host addresses behind <uuid>.local names, as every
    browser does by default."""
    args = [flag for flag in BASE_FLAGS if not (mdns and "WebRtcHideLocalIpsWithMdns" in flag)]
    if fake_devices:
        args.append("--use-fake-device-for-media-stream"
                    + (f"=device-count={cameras}" if cameras > 1 else ""))
    if grant_camera:
        args.append("--use-fake-ui-for-media-stream")
    if camera_file is not None:
        args.append(f"--use-file-for-fake-video-capture={camera_file}")
    return {"executable_path": CHROMIUM, "headless": True, "args": args}


async def new_session(api: aiohttp.ClientSession, **overrides: Any) -> dict[str, Any]:
    body = {"ticket_id": "ZD-1042", "tier": 2, "customer": {"name": "Ana"}, **overrides}
    async with api.post("/api/v1/sessions", json=body) as response:
        assert response.status == 201
        return dict(await response.json())


async def get_png(api: aiohttp.ClientSession, url: str) -> Any:
    async with api.get(url) as response:
        assert response.status == 200 and response.content_type == "image/png"
        return decode_png(await response.read())


def console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


async def drag(page: Page, testid: str, start: tuple[float, float], end: tuple[float, float]) -> None:
    box = await page.get_by_test_id(testid).bounding_box()
    assert box is not None
    x0, y0 = box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"]
    x1, y1 = box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"]
    await page.mouse.move(x0, y0)
    await page.mouse.down()
    for step in range(1, 11):
        await page.mouse.move(x0 + (x1 - x0) * step / 10, y0 + (y1 - y0) * step / 10)
    await page.mouse.up()


async def open_console(context: Any, url: str) -> Page:
    page = await context.new_page()
    await page.goto(url)
    return page


async def join_as_customer(context: Any, url: str, init_script: str | None = None) -> Page:
    page = await context.new_page()
    if init_script:
        await page.add_init_script(init_script)
    await page.goto(url)
    await page.get_by_test_id("join").tap() if await page.evaluate("'ontouchstart' in window") \
        else await page.get_by_test_id("join").click()
    return page


async def video_size(page: Page, testid: str) -> tuple[int, int]:
    size = await page.evaluate(
        f"(() => {{ const v = document.querySelector('[data-testid={testid}]');"
        " return [v.videoWidth, v.videoHeight]; }})()")
    return int(size[0]), int(size[1])


async def wait_playing(page: Page, testid: str) -> None:
    # A function, not an expression: Playwright evaluates expressions with eval, which our CSP forbids.
    await page.wait_for_function(
        "(testid) => { const v = document.querySelector(`[data-testid=${testid}]`);"
        " return v && v.videoWidth > 0 && v.currentTime > 0; }", arg=testid, timeout=15_000)


def canvas_pixels(data_url: str) -> np.ndarray:
    """A canvas's pixels (BGRA) from its toDataURL()."""
    import base64

    import cv2

    raw = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED))


async def record(api: aiohttp.ClientSession, session_id: str) -> dict[str, Any]:
    async with api.get(f"/api/v1/sessions/{session_id}") as response:
        assert response.status == 200
        return dict(await response.json())


# Counts the frames a <video> presents (requestVideoFrameCallback), re-arming if a new stream replaced
# the old one; `window.framesAt` holds the page-clock time of each frame.
COUNT_FRAMES = """(testid) => {
  const video = document.querySelector(`[data-testid=${testid}]`);
  window.framesAt = [];
  let armedAt = 0;
  const arm = () => {
    armedAt = performance.now();
    video.requestVideoFrameCallback(() => { window.framesAt.push(performance.now()); arm(); });
  };
  arm();
  setInterval(() => { if (performance.now() - armedAt > 1000) arm(); }, 250);
}"""


async def frames_since(page: Page, since_ms: float) -> int:
    return int(await page.evaluate("(since) => window.framesAt.filter((t) => t > since).length", since_ms))


async def frames_in(page: Page, seconds: float) -> int:
    """Frames the page's video presents over the next `seconds` (COUNT_FRAMES counting)."""
    since = float(await page.evaluate("performance.now()"))
    await asyncio.sleep(seconds)
    return await frames_since(page, since)


# Counts the offers a page sends on its signalling socket (observing, not changing, what it sends).
COUNT_OFFERS = """
window.offersSent = 0;
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  if (typeof data === "string" && data.includes('"type":"offer"')) window.offersSent += 1;
  return send.call(this, data);
};
"""
