"""Media benchmark: visassist's server side by side with a baseline built on aiortc's MediaRelay.

Both servers serve the same fake aiortc clients on loopback, one scenario at a time, each server
fresh for each scenario (visassist and MediaRelay alternate, so drift on this shared machine hits
both alike). A scenario is N sessions, each a phone sending video and V viewers watching it. --codecs instead
measures the codec work visassist avoids or does on demand (pictures for snapshots, mixed voices).

The clients are cheap on purpose, since they share the machine's cores with the server:
  phones   replay a VP8 clip (1280x720, 30 fps, ~2.5 Mbit/s, a moving textured picture) that is encoded
           once before the runs: their track returns av.Packet objects, which aiortc's RTCRtpSender
           packetizes without encoding. The clip starts with a keyframe and loops back to it.
  viewers  never decode: aiortc's receiver decoder thread (rtcrtpreceiver.decoder_worker) is replaced
           by one that counts the reassembled VP8 frames per receiver, reading the resolution from
           each keyframe's header.
They run in one or two client processes (not the server's, not this one), in this order per
session: the viewers join and negotiate first (as staff do), then the phone joins.

Measured, per server and scenario:
  CPU %/sess   the server process's CPU time (utime+stime from /proc/PID/stat, all threads) over the
               window, as % of one core, divided by the live sessions; "total" is the whole server
  MB/sess      (VmRSS at the window's end - VmRSS of the idle server before any session) / sessions
  fps          median over viewers of frames received per second in the window
  resolution   what the viewers' keyframes said (the most common one)
  first ms     median over viewers of the phone's join (just before it opens its socket / offers)
               to the viewer's first frame
  client %     CPU of all client processes over the same window, as % of one core
The window starts after every viewer's first frame (or a timeout) plus a warm-up.

The visassist server is `python -m visassist serve` on a fresh data directory; sessions are made with
POST /api/v1/sessions (an agent viewer) and POST /api/v1/sessions/{id}/participants (expert and
supervisor viewers), and everyone speaks the socket protocol of tests/utils.py's FakeParticipant.
The baseline (`--serve-relay PORT`) is a minimal aiohttp server: a phone POSTs its offer to
/publish/{room}; a viewer POSTs its offer to /view/{room} and is answered at once with a track that,
once the room's phone track exists, reads MediaRelay().subscribe(phone track). It decodes the phone
once and encodes once per viewer.

--capacity runs only the capacity scenario: visassist with --max-live-sessions K (default 4), K live
sessions, then K+2 tried during the window; it reports the refusals (503 capacity_exhausted on
POST /api/v1/sessions, or the socket's server_busy error) and the live sessions' fps meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import json
import os
import re
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.utils import FakeParticipant, free_port, token_of, wait_until_healthy  # noqa: E402

WIDTH, HEIGHT, FPS = 1280, 720, 30
CLIP_FRAMES, KEYFRAME_EVERY = 180, 90
VIDEO_TIME_BASE = Fraction(1, 90_000)
FIRST_FRAME_TIMEOUT = 30.0
SATURATED_FPS = 0.9 * FPS
TICKS = os.sysconf("SC_CLK_TCK")


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def loopback_ice() -> None:
    from visassist.media.ice import use_host_addresses

    use_host_addresses(["127.0.0.1"])


# The clip


def encode_clip(path: Path) -> None:
    """Encode the phones' clip once: a panning textured picture with a moving disc and a counter."""
    import cv2

    rng = np.random.default_rng(7)
    pad_x, pad_y = 4 * CLIP_FRAMES, 2 * CLIP_FRAMES
    noise = rng.integers(0, 256, (HEIGHT + pad_y, WIDTH + pad_x, 3), dtype=np.uint8)
    texture = cv2.GaussianBlur(noise, (0, 0), 2.5)
    low, high = int(texture.min()), int(texture.max())
    texture = ((texture.astype(np.int16) - low) * (255 / max(1, high - low))).astype(np.uint8)
    ys, xs = np.mgrid[0:HEIGHT + pad_y, 0:WIDTH + pad_x]
    stripes = (40 * np.sin(xs / 23.0) * np.cos(ys / 31.0)).astype(np.int16)
    texture = np.clip(texture.astype(np.int16) + stripes[..., None], 0, 255).astype(np.uint8)

    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = Fraction(1, FPS)
    codec.framerate = Fraction(FPS, 1)
    codec.bit_rate = 2_500_000
    codec.gop_size = KEYFRAME_EVERY
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    frames: list[bytes] = []
    for index in range(CLIP_FRAMES + 1):
        if index == CLIP_FRAMES:
            packets = codec.encode(None)
        else:
            x, y = 4 * index, 2 * index
            image = texture[y:y + HEIGHT, x:x + WIDTH].copy()
            cx = int(WIDTH / 2 + WIDTH / 3 * np.sin(2 * np.pi * index / CLIP_FRAMES))
            cv2.circle(image, (cx, HEIGHT // 2), 90, (40, 200, 250), -1)
            cv2.putText(image, f"{index:03d}", (40, 100), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 6)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
            frame.pts = index
            packets = codec.encode(frame)
        frames.extend(bytes(p) for p in packets)
    if not frames or frames[0][0] & 1:
        raise RuntimeError("the clip does not start with a keyframe")
    with path.open("wb") as out:
        for data in frames:
            out.write(struct.pack("<I", len(data)) + data)


def load_clip(path: Path) -> list[bytes]:
    blob, frames, offset = path.read_bytes(), [], 0
    while offset < len(blob):
        (size,) = struct.unpack_from("<I", blob, offset)
        frames.append(blob[offset + 4:offset + 4 + size])
        offset += 4 + size
    return frames


def vp8_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe's header; None for a delta frame."""
    if len(data) < 10 or data[0] & 1 or data[3:6] != b"\x9d\x01\x2a":
        return None
    return (data[6] | data[7] << 8) & 0x3FFF, (data[8] | data[9] << 8) & 0x3FFF


# The client process: phones and viewers


def clip_track(clip: list[bytes]) -> Any:
    """A phone camera's track (aiortc is imported only in the processes that need it)."""
    from aiortc.mediastreams import MediaStreamTrack

    class Track(MediaStreamTrack):
        """A phone camera replaying pre-encoded VP8 at 30 fps; starts at the clip's first keyframe."""

        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._index = 0
            self._start: float | None = None

        async def recv(self) -> av.Packet[Any]:
            now = time.monotonic()
            if self._start is None:
                self._start = now
            due = self._start + self._index / FPS
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 0.5:  # far behind (an overloaded machine): slip rather than burst
                self._start = now - self._index / FPS
            packet = av.Packet(clip[self._index % len(clip)])
            packet.pts = self._index * (VIDEO_TIME_BASE.denominator // FPS)
            packet.time_base = VIDEO_TIME_BASE
            self._index += 1
            return packet

    return Track()


class ViewerCounter:
    """Frames one receiver reassembled: counted in its decoder thread instead of decoding them."""

    def __init__(self) -> None:
        self.frames = 0
        self.first: float | None = None
        self.size: tuple[int, int] | None = None

    def count(self, data: bytes) -> None:
        if self.first is None:
            self.first = time.monotonic()
        self.frames += 1
        size = vp8_size(data)
        if size is not None:
            self.size = size


COUNTERS: dict[object, ViewerCounter] = {}
COUNTERS_LOCK = threading.Lock()


def counter_for(queue: object) -> ViewerCounter:
    """The counter of the receiver whose track reads from `queue` (made by whoever asks first)."""
    with COUNTERS_LOCK:
        counter = COUNTERS.get(queue)
        if counter is None:
            counter = COUNTERS[queue] = ViewerCounter()
        return counter


def counting_worker(loop: asyncio.AbstractEventLoop, input_q: Any, output_q: Any,
                    decode_error: threading.Event) -> None:
    """Stands in for aiortc.rtcrtpreceiver.decoder_worker: counts frames, decodes nothing."""
    counter = counter_for(output_q)
    while True:
        task = input_q.get()
        if task is None:
            asyncio.run_coroutine_threadsafe(output_q.put(None), loop)
            break
        counter.count(task[1].data)


def refusal(exc: BaseException) -> str:
    found = re.search(r"'code': '([a-z_]+)'", str(exc))
    return found.group(1) if found else f"{type(exc).__name__}: {str(exc)[:100]}"


class Clients:
    """One client process's phones and viewers, driven by JSON lines on stdin."""

    def __init__(self, kind: str, base: str, clip: list[bytes]) -> None:
        from aiortc import RTCConfiguration, RTCRtpSender

        self.kind, self.base, self.clip = kind, base, clip
        self.config = RTCConfiguration(iceServers=[])
        self.vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs
                    if c.mimeType in ("video/VP8", "video/rtx")]
        self.http = aiohttp.ClientSession(base_url=base)
        self.viewers: dict[str, ViewerCounter] = {}
        self.closers: list[Callable[[], Awaitable[Any]]] = []

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        if command["cmd"] == "join":
            joined = [await self.join(plan) for plan in command["sessions"]]
            await self.wait_first_frames([k for j in joined for k in j.get("viewers", [])])
            for result in joined:
                at = result.pop("joined_at", None)
                result["first_ms"] = [
                    None if self.viewers[k].first is None else (self.viewers[k].first - at) * 1000
                    for k in result.get("viewers", [])]
            return {"sessions": joined}
        if command["cmd"] == "sample":
            return {"t": time.monotonic(), "viewers": {
                k: [c.frames, None if c.size is None else "{}x{}".format(*c.size)]
                for k, c in self.viewers.items()}}
        if command["cmd"] == "stop":
            await asyncio.wait_for(asyncio.gather(*(close() for close in reversed(self.closers)),
                                                  return_exceptions=True), 20)
            await self.http.close()
            return {"stopped": True}
        raise ValueError(f"unknown command {command}")

    async def join(self, plan: dict[str, Any]) -> dict[str, Any]:
        """Viewers first, then the phone; `plan` is {"id", "phone": token|room, "viewers": [...]}."""
        keys: list[str] = []
        try:
            for index, who in enumerate(plan["viewers"]):
                receiver = await self.connect(who, send=False)
                key = f"{plan['id']}/{index}"
                self.viewers[key] = counter_for(receiver.track._queue)
                keys.append(key)
            joined_at = time.monotonic()
            await self.connect(plan["phone"], send=True)
        except (AssertionError, TimeoutError, aiohttp.ClientError, RuntimeError) as exc:
            for key in keys:
                self.viewers.pop(key, None)
            return {"id": plan["id"], "refused": refusal(exc)}
        return {"id": plan["id"], "refused": None, "viewers": keys, "joined_at": joined_at}

    async def connect(self, who: str, send: bool) -> Any:
        """A peer that sends the clip or receives video; returns its transceiver's receiver."""
        from aiortc import RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(self.config)
        transceiver = pc.addTransceiver(clip_track(self.clip) if send else "video",
                                        direction="sendonly" if send else "recvonly")
        transceiver.setCodecPreferences(self.vp8)
        if self.kind == "relay":
            self.closers.append(pc.close)
            await pc.setLocalDescription(await pc.createOffer())
            path = f"/publish/{who}" if send else f"/view/{who}"
            async with self.http.post(path, json={"sdp": pc.localDescription.sdp}) as response:
                if response.status != 200:
                    raise RuntimeError(f"{path}: HTTP {response.status}")
                answer = (await response.json())["sdp"]
        else:
            participant = FakeParticipant(self.http, who)
            self.closers.append(participant.close)
            await participant.join()
            participant.pc = pc
            await pc.setLocalDescription(await pc.createOffer())
            await participant.send({"type": "offer", "sdp": pc.localDescription.sdp})
            answer = (await participant.expect("answer", timeout=20))["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return transceiver.receiver

    async def wait_first_frames(self, keys: list[str]) -> None:
        # Polled: the counters are written by aiortc's receiver threads.
        for _ in range(int(FIRST_FRAME_TIMEOUT / 0.02)):
            if all(self.viewers[k].first is not None for k in keys):
                return
            await asyncio.sleep(0.02)


async def client_main(clip_path: str, base: str, kind: str) -> None:
    import aiortc.rtcrtpreceiver

    raise_file_limit()
    loopback_ice()
    aiortc.rtcrtpreceiver.decoder_worker = counting_worker
    clients = Clients(kind, base, load_clip(Path(clip_path)))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        reply = await clients.handle(command)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if command["cmd"] == "stop":
            break


# The baseline server


def relay_app() -> Any:
    from aiohttp import web
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay
    from aiortc.mediastreams import MediaStreamTrack

    relay = MediaRelay()
    phones: dict[str, asyncio.Future[MediaStreamTrack]] = {}
    peers: set[RTCPeerConnection] = set()

    def phone_of(room: str) -> asyncio.Future[MediaStreamTrack]:
        return phones.setdefault(room, asyncio.get_running_loop().create_future())

    class Subscription(MediaStreamTrack):
        """A viewer's track: the room's phone through MediaRelay, once the phone is there."""

        kind = "video"

        def __init__(self, room: str) -> None:
            super().__init__()
            self._room = room
            self._proxy: MediaStreamTrack | None = None

        async def recv(self) -> Any:
            if self._proxy is None:
                self._proxy = relay.subscribe(await phone_of(self._room))
            return await self._proxy.recv()

        def stop(self) -> None:
            super().stop()
            if self._proxy is not None:
                self._proxy.stop()

    async def answer(request: web.Request, prepare: Callable[[RTCPeerConnection], None]) -> web.Response:
        offer = await request.json()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peers.add(pc)

        @pc.on("connectionstatechange")
        async def _changed() -> None:
            if pc.connectionState in ("failed", "closed"):
                peers.discard(pc)
                await pc.close()

        prepare(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        if request.match_info.get("kind") == "view":
            pc.addTrack(Subscription(request.match_info["room"]))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp})

    async def publish(request: web.Request) -> web.Response:
        room = request.match_info["room"]

        def prepare(pc: RTCPeerConnection) -> None:
            @pc.on("track")
            def _track(track: MediaStreamTrack) -> None:
                if track.kind == "video" and not phone_of(room).done():
                    phone_of(room).set_result(track)

        return await answer(request, prepare)

    async def view(request: web.Request) -> web.Response:
        return await answer(request, lambda pc: None)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def close_all(app: web.Application) -> None:
        await asyncio.gather(*(pc.close() for pc in list(peers)), return_exceptions=True)

    app = web.Application()
    app.add_routes([web.post("/publish/{room}", publish), web.post("/{kind:view}/{room}", view),
                    web.get("/healthz", healthz)])
    app.on_shutdown.append(close_all)
    return app


def serve_relay(port: int) -> None:
    from aiohttp import web

    raise_file_limit()
    loopback_ice()
    web.run_app(relay_app(), host="127.0.0.1", port=port, print=None)


# Measuring


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Server:
    kind: str
    process: asyncio.subprocess.Process
    base: str
    key: str = ""
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.asynccontextmanager
async def start_server(kind: str, scratch: Path, max_live: int | None) -> AsyncIterator[Server]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = scratch / f"{kind}-{port}.log"
    key = ""
    if kind == "visassist":
        data = scratch / f"data-{port}"
        create = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "visassist", "api-key", "create", "--name", "bench", "--data-dir",
            str(data), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        key = (await create.communicate())[0].decode().strip()
        command = [sys.executable, "-m", "visassist", "serve", "--port", str(port), "--data-dir", str(data),
                   "--ice-address", "127.0.0.1", "--log-level", "WARNING"]
        if max_live is not None:
            command += ["--max-live-sessions", str(max_live)]
    else:
        command = [sys.executable, __file__, "--serve-relay", str(port)]
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=sink, stderr=sink)
    server = Server(kind, process, base, key, log)
    try:
        try:
            await wait_until_healthy(base, 30)
        except AssertionError:
            raise RuntimeError(f"{kind} server did not start:\n{log.read_text()[-2000:]}") from None
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


class ClientProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, clip: Path, server: Server) -> ClientProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", str(clip), server.base, server.kind, cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, limit=1 << 22)
        return cls(process)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def ask(self, command: dict[str, Any], seconds: float = 300) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), seconds)
        if not line:
            raise RuntimeError("a client process died (see its errors above)")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.ask({"cmd": "stop"}, seconds=30)
        if self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@dataclass
class Run:
    server: str
    sessions: int
    viewers: int
    live: int = 0
    cpu_total: float = 0.0  # % of one core
    rss_idle: float = 0.0
    rss: float = 0.0
    client_cpu: float = 0.0
    fps: list[float] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    no_frame: int = 0
    refused: list[str] = field(default_factory=list)
    extra_fps: list[float] = field(default_factory=list)

    @property
    def cpu_per_session(self) -> float:
        return self.cpu_total / self.live if self.live else float("nan")

    @property
    def rss_per_session(self) -> float:
        return (self.rss - self.rss_idle) / self.live if self.live else float("nan")


async def create_sessions(server: Server, count: int, viewers: int, start: int,
                          run: Run) -> list[dict[str, Any]]:
    """Session plans {"id", "phone", "viewers"} for the clients; refusals are noted in `run`."""
    if server.kind == "relay":
        return [{"id": f"s{i}", "phone": f"s{i}", "viewers": [f"s{i}"] * viewers}
                for i in range(start, start + count)]
    plans = []
    headers = {"Authorization": f"Bearer {server.key}"}
    async with aiohttp.ClientSession(base_url=server.base, headers=headers) as http:
        for i in range(start, start + count):
            async with http.post("/api/v1/sessions", json={"ticket_id": f"BENCH-{i}", "tier": 2}) as r:
                body = await r.json(content_type=None)
                if r.status >= 400:
                    code = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
                    run.refused.append(f"POST /api/v1/sessions: HTTP {r.status} {code}")
                    continue
            tokens = [token_of(body["agent_url"])]
            for role in ("expert", "supervisor")[:viewers - 1]:
                async with http.post(f"/api/v1/sessions/{body['id']}/participants",
                                     json={"role": role, "name": f"bench {role}"}) as r:
                    r.raise_for_status()
                    tokens.append(token_of((await r.json())["url"]))
            plans.append({"id": f"s{i}", "phone": token_of(body["customer_url"]), "viewers": tokens})
    return plans


async def join_all(clients: list[ClientProcess], plans: list[dict[str, Any]], run: Run,
                   count_live: bool = True) -> list[str]:
    """Hand the sessions out round-robin; returns the viewer keys of sessions that went live."""
    shares = [plans[i::len(clients)] for i in range(len(clients))]
    replies = await asyncio.gather(*(c.ask({"cmd": "join", "sessions": s})
                                     for c, s in zip(clients, shares, strict=True) if s))
    keys: list[str] = []
    for reply in replies:
        for session in reply["sessions"]:
            if session["refused"]:
                run.refused.append(f"socket: {session['refused']}")
                continue
            if count_live:
                run.live += 1
            keys += session["viewers"]
            for ms in session["first_ms"]:
                if ms is None:
                    run.no_frame += 1
                else:
                    run.first_ms.append(ms)
    return keys


async def sample(clients: list[ClientProcess]) -> dict[str, tuple[float, int, str | None]]:
    replies = await asyncio.gather(*(c.ask({"cmd": "sample"}) for c in clients))
    return {k: (r["t"], v[0], v[1]) for r in replies for k, v in r["viewers"].items()}


def fps_between(before: dict[str, tuple[float, int, str | None]],
                after: dict[str, tuple[float, int, str | None]], keys: list[str]) -> list[float]:
    return [(after[k][1] - before[k][1]) / (after[k][0] - before[k][0]) for k in keys if k in before]


async def measure(kind: str, sessions: int, viewers: int, args: argparse.Namespace, clip: Path,
                  scratch: Path, max_live: int | None, extra: int = 0) -> Run:
    run = Run("MediaRelay" if kind == "relay" else "visassist", sessions, viewers)
    async with start_server(kind, scratch, max_live) as server:
        spawn = asyncio.gather(*(ClientProcess.start(clip, server) for _ in range(min(2, sessions + extra))))
        await asyncio.sleep(1.0)
        run.rss_idle = rss_mb(server.pid)
        clients = await spawn
        try:
            plans = await create_sessions(server, sessions, viewers, 0, run)
            keys = await join_all(clients, plans, run)
            await asyncio.sleep(args.warmup)
            before = await sample(clients)
            cpu0 = time.monotonic(), cpu_seconds(server.pid), [cpu_seconds(c.pid) for c in clients]
            extra_keys: list[str] = []
            if extra:
                extra_plans = await create_sessions(server, extra, viewers, sessions, run)
                if extra_plans:
                    extra_keys = await join_all(clients[:1], extra_plans, run, count_live=False)
            await asyncio.sleep(max(0.0, args.window - (time.monotonic() - cpu0[0])))
            after = await sample(clients)
            elapsed = time.monotonic() - cpu0[0]
            run.cpu_total = 100 * (cpu_seconds(server.pid) - cpu0[1]) / elapsed
            run.client_cpu = 100 * sum(cpu_seconds(c.pid) - t for c, t in
                                       zip(clients, cpu0[2], strict=True)) / elapsed
            run.rss = rss_mb(server.pid)
            run.fps = fps_between(before, after, keys)
            run.extra_fps = [(after[k][1]) / (after[k][0] - cpu0[0]) for k in extra_keys if k in after]
            run.sizes = [s for k in keys if (s := after[k][2])]
        finally:
            await asyncio.gather(*(c.stop() for c in clients))
    return run


# Reporting


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cells(run: Run) -> str:
    size = collections.Counter(run.sizes).most_common(1)[0][0] if run.sizes else "-"
    return (f"{run.cpu_per_session:7.1f} {run.cpu_total:6.0f} {run.rss_per_session:7.1f} "
            f"{median(run.fps):5.1f} {size:>9} {median(run.first_ms):6.0f} {run.client_cpu:5.0f}")


def print_table(results: dict[tuple[int, int], dict[str, Run]], args: argparse.Namespace) -> None:
    servers = [s for s in ("visassist", "MediaRelay") if any(s in r for r in results.values())]
    group = f"{'CPU%/s':>7} {'total':>6} {'MB/s':>7} {'fps':>5} {'size':>9} {'first':>6} {'cli%':>5}"
    width = len(group)
    print(f"\nwindow {args.window:.0f} s after {args.warmup:.0f} s warm-up, {os.cpu_count()} cores; "
          "CPU in % of one core (per session, server total, all client processes), "
          "MB = server RSS per session, fps = median viewer, first = join -> first frame ms (median)")
    print(f"{'':18}" + "".join(f" | {s:^{width}}" for s in servers)
          + (" | relay/visassist" if len(servers) == 2 else ""))
    print(f"{'sessions x viewers':<18}" + "".join(f" | {group}" for _ in servers)
          + (" | CPU/session" if len(servers) == 2 else ""))
    notes: list[str] = []
    saturated = False
    for (sessions, viewers), runs in results.items():
        row = f"{sessions:>8} x {viewers:<7}"
        for name in servers:
            run = runs.get(name)
            row += " | " + (cells(run) if run else f"{'-':^{width}}")
            if run and (run.refused or run.no_frame or (run.fps and min(run.fps) < 0.8 * median(run.fps))):
                notes.append(f"{sessions} x {viewers}, {name}: {run.live}/{sessions} sessions live"
                             + (f", refused: {'; '.join(run.refused)}" if run.refused else "")
                             + (f", {run.no_frame} viewers got no frame" if run.no_frame else "")
                             + (f", viewer fps min {min(run.fps):.1f} max {max(run.fps):.1f}"
                                if run.fps else ""))
        if len(servers) == 2 and all(s in runs for s in servers):
            ratio = runs["MediaRelay"].cpu_per_session / runs["visassist"].cpu_per_session
            slow = any(median(runs[s].fps) < SATURATED_FPS for s in servers)
            saturated |= slow
            row += f" | {ratio:10.2f}x" + (" *" if slow else "")
        print(row)
    if saturated:
        print(f"  * a server delivered under {SATURATED_FPS:.0f} fps: it was saturated (the machine has "
              f"{os.cpu_count()} cores), so its CPU per session is capped and the ratio understates it")
    for note in notes:
        print(f"  note: {note}")


def print_capacity(run: Run, limit: int, tried: int) -> None:
    print(f"\ncapacity: visassist --max-live-sessions {limit}; {tried} sessions tried "
          f"({run.sessions} first, then {tried - run.sessions} during the window)")
    how = "; ".join(f"{n} x {why}" for why, n in collections.Counter(run.refused).items())
    print(f"  refused: {len(run.refused)}" + (f" ({how})" if how else ""))
    print(f"  live sessions: {run.live}; their viewers' fps during the attempt: median "
          f"{median(run.fps):.1f}, min {min(run.fps, default=float('nan')):.1f}; server CPU "
          f"{run.cpu_total:.0f}% of a core")
    if run.extra_fps:
        print(f"  admitted beyond the limit: {len(run.extra_fps)} viewers, fps "
              + ", ".join(f"{f:.1f}" for f in run.extra_fps))


def codec_costs(clip: list[bytes]) -> None:
    """What the work we avoid (or do only on demand) would cost: pictures for snapshots, and voices."""
    import av
    import numpy as np

    def cpu_ms(work: Any) -> float:
        started = time.process_time()
        work()
        return (time.process_time() - started) * 1000

    def decode(frames: list[bytes]) -> None:
        decoder = av.CodecContext.create("vp8", "r")
        for data in frames:
            decoder.decode(av.Packet(data))

    per_frame = cpu_ms(lambda: decode(clip)) / len(clip)
    print(f"\npictures for snapshots, one {WIDTH}x{HEIGHT} {FPS} fps source:")
    print(f"  decoding every frame as it arrives: {per_frame:.2f} ms a frame = "
          f"{per_frame * FPS / 10:.1f}% of a core for as long as the source is live")
    for length in (1, 30, 90):
        chain = clip[:length]
        print(f"  on demand, a chain of {length:2d} frames from a keyframe: "
              f"{cpu_ms(functools.partial(decode, chain)):5.1f} ms once, when a snapshot asks")

    rate, samples = 48_000, 960
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = rate, "mono", "s16"
    encoder.time_base = Fraction(1, rate)
    tone = (3000 * np.sin(np.arange(rate) * 2 * np.pi * 220 / rate)).astype(np.int16)
    frames = []
    for index in range(50):
        frame = av.AudioFrame.from_ndarray(tone[index * samples:(index + 1) * samples].reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, index * samples
        frames.append(frame)
    packets: list[bytes] = []
    encode_ms = cpu_ms(lambda: packets.extend(bytes(p) for f in frames for p in encoder.encode(f)))
    decoder = av.CodecContext.create("opus", "r")
    decode_ms = cpu_ms(lambda: [decoder.decode(av.Packet(p)) for p in packets])
    print("voices (Opus, 1 s of speech):")
    print("  forwarded to a listener who hears one person: no decoding, no encoding")
    print(f"  mixed: decoding a voice {decode_ms / 10:.2f}% of a core (once per speaker), encoding a mix "
          f"{encode_ms / 10:.2f}% (once per listener)")
    print(f"  a call of 3 speakers and a silent supervisor: {(3 * decode_ms + 4 * encode_ms) / 10:.1f}% "
          "of a core while they all talk")


async def main(args: argparse.Namespace) -> None:
    raise_file_limit()
    help_process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "visassist", "serve", "--help", cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL)
    helped = (await help_process.communicate())[0].decode()
    limit = args.max_live_sessions
    if args.capacity and limit is None:
        limit = 4
    if limit is not None and "--max-live-sessions" not in helped:
        print("warning: this visassist has no `serve --max-live-sessions`; running without a limit",
              file=sys.stderr)
        limit = None
    with tempfile.TemporaryDirectory(prefix="visassist-bench-media-") as tmp:
        scratch = Path(tmp)
        clip = scratch / "clip.vp8s"
        began = time.monotonic()
        encode_clip(clip)
        print(f"clip: {len(load_clip(clip))} frames {WIDTH}x{HEIGHT} VP8, {clip.stat().st_size / 1e6:.1f} MB "
              f"({clip.stat().st_size * 8 * FPS / len(load_clip(clip)) / 1e6:.1f} Mbit/s), "
              f"encoded in {time.monotonic() - began:.1f} s", file=sys.stderr)

        if args.codecs:
            codec_costs(load_clip(clip))
            return
        if args.capacity:
            keep = limit if limit is not None else args.capacity_sessions
            run = await measure("visassist", keep, 1, args, clip, scratch, limit, extra=2)
            print_capacity(run, keep if limit is not None else 0, keep + 2)
            return

        scenarios = [(n, 1) for n in args.sessions] + [(n, 3) for n in args.triple]
        kinds = {"visassist": ["visassist"], "relay": ["relay"]}.get(args.only, ["visassist", "relay"])
        results: dict[tuple[int, int], dict[str, Run]] = {}
        for sessions, viewers in scenarios:
            for kind in kinds:
                began = time.monotonic()
                run = await measure(kind, sessions, viewers, args, clip, scratch, limit)
                results.setdefault((sessions, viewers), {})[run.server] = run
                print(f"{sessions} x {viewers} {run.server}: {cells(run)}  "
                      f"({time.monotonic() - began:.0f} s)", file=sys.stderr)
        print_table(results, args)


def parse_counts(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n.strip()]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=parse_counts, default=[1, 4, 8, 16],
                        help="session counts with one viewer each (default 1,4,8,16)")
    parser.add_argument("--triple", type=parse_counts, default=[1, 4],
                        help="session counts with three viewers each (default 1,4; '' for none)")
    parser.add_argument("--window", type=float, default=10.0, help="measuring window, s (default 10)")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="wait after the last first frame before the window, s (default 5)")
    parser.add_argument("--only", choices=["visassist", "relay"], help="measure one server only")
    parser.add_argument("--max-live-sessions", type=int, metavar="N",
                        help="passed to the visassist server (default: its own)")
    parser.add_argument("--capacity", action="store_true",
                        help="run only the capacity scenario: K live sessions (K = --max-live-sessions, "
                             "default 4), then K+2 tried")
    parser.add_argument("--codecs", action="store_true",
                        help="instead: what decoding for snapshots and mixing voices would cost")
    parser.add_argument("--capacity-sessions", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--serve-relay", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=3, metavar=("CLIP", "BASE", "KIND"), help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_relay is not None:
        serve_relay(arguments.serve_relay)
    elif arguments.client is not None:
        asyncio.run(client_main(*arguments.client))
    else:
        asyncio.run(main(arguments))
