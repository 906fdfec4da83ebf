"""Shared fakes for the tests: a camera that shows an ArUco marker, aiortc participants, image checks."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import av
import cv2
import numpy as np
from aiohttp import ClientSession, ClientWebSocketResponse
from aiohttp.test_utils import TestClient
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame

from visassist.media.encoded import EncodedFrame, vp8_keyframe_size

MARKER_ID = 7
# A real offer from headless Chromium (voice, camera, a receive-only video); candidates trickle after it.
CHROMIUM_OFFER = (Path(__file__).parent / "data/chromium_offer.sdp").read_bytes().decode()  # CRLF kept
ARUCO = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)


SERIAL = "VX-2231-A"


def marker_image(width: int = 640, height: int = 480, marker_id: int = MARKER_ID) -> np.ndarray:
    """A grey scene with one ArUco marker on a white quiet zone in its left half, and a label reading
    "SN VX-2231-A" at the top of its right half (for the label reader)."""
    image = np.full((height, width, 3), 96, dtype=np.uint8)
    side = height // 2
    pad = side // 6
    top, left = height // 4, width // 8
    cv2.rectangle(image, (left - pad, top - pad), (left + side + pad, top + side + pad), (255, 255, 255), -1)
    marker = cv2.aruco.generateImageMarker(ARUCO, marker_id, side)
    image[top:top + side, left:left + side] = cv2.cvtColor(marker, cv2.COLOR_GRAY2BGR)
    scale = height / 480
    x0, y0, x1, y1 = int(width * 0.52), int(height * 0.02), int(width * 0.99), int(height * 0.15)
    cv2.rectangle(image, (x0, y0), (x1, y1), (255, 255, 255), -1)
    cv2.putText(image, f"SN {SERIAL}", (x0 + int(8 * scale), y1 - int(14 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                1.0 * scale, (0, 0, 0), max(1, round(2 * scale)), cv2.LINE_AA)
    return image


def detect_markers(image: np.ndarray) -> list[int]:
    detector = cv2.aruco.ArucoDetector(ARUCO, cv2.aruco.DetectorParameters())
    _, ids, _ = detector.detectMarkers(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    return [] if ids is None else [int(i) for i in ids.flatten()]


def decode_png(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable image"
    return image


def red_fraction(image: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> float:
    """Share of strongly red pixels in a normalized box of a BGR image."""
    h, w = image.shape[:2]
    box = image[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)].astype(int)
    red = (box[..., 2] > 180) & (box[..., 1] < 90) & (box[..., 0] < 90)
    return float(red.mean()) if red.size else 0.0


def vp8_frames(count: int, width: int = 320, height: int = 240, keyframe_every: int = 0,
               image: np.ndarray | None = None) -> list[EncodedFrame]:
    """`count` real VP8 frames (libvpx) of the marker scene, moving a little, as the server receives them."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.bit_rate = 500_000
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    scene = marker_image(width, height) if image is None else image
    frames = []
    for index in range(count):
        picture = np.roll(scene, index % 7, axis=1)
        frame = VideoFrame.from_ndarray(picture, format="bgr24").reformat(format="yuv420p")
        frame.pts = index
        if keyframe_every and index % keyframe_every == 0:
            frame.pict_type = av.video.frame.PictureType.I
        for packet in codec.encode(frame):
            data = bytes(packet)
            size = vp8_keyframe_size(data)
            frames.append(EncodedFrame(data=data, timestamp=index * 3000, clock_rate=90_000,
                                       keyframe=size is not None, size=size))
    return frames


class QuietTrack(MediaStreamTrack):
    """A live track that never yields: a sender connected but silent (tests publish by hand)."""

    kind = "video"

    async def recv(self) -> VideoFrame:
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")


class MarkerTrack(VideoStreamTrack):
    """A fake phone camera: the marker scene at 30 fps."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        super().__init__()
        self.image = marker_image(width, height)

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame.from_ndarray(self.image, format="bgr24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class FakeParticipant:
    """A participant speaking the real protocol over a real socket, with a real aiortc peer."""

    def __init__(self, client: TestClient | ClientSession, token: str) -> None:
        self.client = client
        self.token = token
        self.ws: ClientWebSocketResponse | None = None
        self.pc: RTCPeerConnection | None = None
        self.welcome: dict[str, Any] = {}
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def join(self) -> dict[str, Any]:
        self.ws = await self.client.ws_connect("/ws")
        await self.ws.send_json({"type": "hello", "protocol": 1, "token": self.token})
        self._reader = asyncio.create_task(self._read())
        self.welcome = await self.expect("welcome")
        return self.welcome

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            await self.inbox.put(json.loads(message.data))

    async def expect(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next message of type `kind`, skipping others (presence and media updates come and go)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if message["type"] == kind:
                    return message
                if message["type"] == "error" and kind != "error":
                    raise AssertionError(f"server error while waiting for {kind}: {message}")

    async def media(self, source: str = "camera", state: str | None = None,
                    timeout: float = 15.0) -> dict[str, Any]:
        """The next media message about `source` (in `state`, if given)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.expect("media")
                if message["source"] == source and (state is None or message["state"] == state):
                    return message

    async def closed_by_server(self, timeout: float = 5.0) -> int | None:
        """Wait until the server closes this socket; the close code it gave."""
        assert self.ws is not None and self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.ws.close_code

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(message)

    async def negotiate(self, send: MediaStreamTrack | None = None, receive: bool = False) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.on("track", self.tracks.put_nowait)
        if send is not None:
            self.pc.addTransceiver(send, direction="sendonly")
        if receive:
            self.pc.addTransceiver("video", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.send({"type": "offer", "sdp": self.pc.localDescription.sdp})
        answer = await self.expect("answer")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def track(self, timeout: float = 10.0) -> MediaStreamTrack:
        return await asyncio.wait_for(self.tracks.get(), timeout)

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


class Clock:
    """The app's clock in tests: real time plus however far a test has moved it on."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until_healthy(base: str, seconds: float = 10.0) -> None:
    """Poll /healthz of a server process that is starting."""
    async with aiohttp.ClientSession() as http:
        for _ in range(int(seconds / 0.05)):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{base} did not become healthy in {seconds} s")


async def start_app(aiohttp_client: Any, settings: Any,
                    clock: Clock | None = None) -> tuple[TestClient, dict[str, str]]:
    """A test client on an app built from `settings`, and headers with a fresh API key."""
    from visassist.app import create_app
    from visassist.context import AppContext
    from visassist.tokens import digest, new_api_key, new_id

    client = await aiohttp_client(create_app(settings, clock or Clock()))
    key = new_api_key()
    await client.app[AppContext.KEY].store.create_api_key(new_id("key"), "tests", digest(key))
    return client, {"Authorization": f"Bearer {key}"}


async def snapshot_from_a_live_camera(client: Any, session: dict[str, Any],
                                      annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A fake customer streams the marker camera; the agent takes one snapshot. Both stay connected."""
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    await agent.join()
    await customer.join()
    await customer.negotiate(send=MarkerTrack())
    await agent.media("camera", "live")
    await agent.send({"type": "snapshot", "request_id": "r", "annotations": annotations or []})
    stored = (await agent.expect("snapshot.stored"))["snapshot"]
    return {"agent": agent, "customer": customer, "snapshot": stored}
