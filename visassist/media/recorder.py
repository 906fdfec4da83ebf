"""Session recording: the video the lead agent watches and everyone's voices, in one WebM file.

The recorder is one more viewer and one more listener of the room, so it gets what they get: the
phone's VP8 frames exactly as sent (muxed with PyAV, never re-encoded) and the voices forwarded as
Opus packets, or, while several people talk at once, mixed and encoded once for the file (a single
audio track, because browsers play only the first one). Switching between camera and screen and
resolution changes need nothing special: each stream starts at a keyframe that carries its size, and
WebM players follow it. The file opens at the first keyframe, so it never starts undecodable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler, Packet
from av.container import OutputContainer

from visassist.media.audio import RATE, Voice, VoiceTrack
from visassist.media.encoded import vp8_keyframe_size
from visassist.media.feed import CLOCK_RATE, FeedTrack, VideoFeed
from visassist.models import utcnow

log = logging.getLogger(__name__)

MS = Fraction(1, 1000)  # WebM's time base


@dataclass(frozen=True)
class Recorded:
    """What a finished recording holds."""

    path: Path
    started_at: datetime
    ended_at: datetime
    duration_seconds: float
    size_bytes: int
    width: int
    height: int


class Recorder:
    def __init__(self, path: Path, feed: VideoFeed, speakers: Callable[[], list[Voice]]) -> None:
        self.path = path
        self.started_at = utcnow()
        # Created together, so both timelines start at the same instant.
        self._video = FeedTrack(feed)
        self._audio = VoiceTrack(speakers)
        self._container: OutputContainer | None = None
        self._video_stream: Any = None
        self._audio_stream: Any = None
        self._encoder: Any = None
        self._resampler: AudioResampler | None = None
        self._first_ms: int | None = None
        self._last_ms = {"video": -1, "audio": -1}
        self._size: tuple[int, int] | None = None
        self._tasks = [asyncio.create_task(self._pump_video(), name="recorder-video"),
                       asyncio.create_task(self._pump_audio(), name="recorder-audio")]

    def watch(self, feed: VideoFeed) -> None:
        """Record `feed` from its next keyframe on (the lead switched between camera and screen)."""
        self._video.watch(feed)

    async def stop(self) -> Recorded | None:
        """Finish the file; None when no video ever came (nothing is kept then)."""
        self._video.stop()
        self._audio.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await task
        container, self._container = self._container, None
        if container is None or self._size is None or self._first_ms is None:
            return None
        await asyncio.to_thread(_close, container, self.path)
        duration = max(self._last_ms.values()) - self._first_ms
        return Recorded(path=self.path, started_at=self.started_at, ended_at=utcnow(),
                        duration_seconds=round(duration / 1000, 3),
                        size_bytes=self.path.stat().st_size, width=self._size[0], height=self._size[1])

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.path), mode="w", format="webm")
        video = container.add_stream("libvpx", rate=30)
        video.width, video.height = width, height
        video.time_base = MS
        # An Opus encoder for the moments voices are mixed; its header describes forwarded packets too.
        encoder = av.CodecContext.create("libopus", "w")
        encoder.sample_rate, encoder.layout, encoder.format = RATE, "stereo", "s16"
        encoder.time_base = Fraction(1, RATE)
        encoder.options = {"application": "voip"}
        encoder.open()
        audio = container.add_stream("libopus", rate=RATE)
        audio.codec_context.layout = "stereo"
        audio.codec_context.extradata = encoder.extradata
        audio.time_base = MS
        self._container, self._video_stream, self._audio_stream = container, video, audio
        self._encoder = encoder
        self._resampler = AudioResampler(format="s16", layout="stereo", rate=RATE)
        self._size = (width, height)

    def _mux(self, kind: str, data: bytes, ms: int, keyframe: bool = False) -> None:
        if self._container is None or self._first_ms is None or ms < self._first_ms:
            return  # nothing before the first picture
        ms = max(ms, self._last_ms[kind] + 1)  # each stream's timestamps must rise
        self._last_ms[kind] = ms
        packet = Packet(data)
        packet.stream = self._video_stream if kind == "video" else self._audio_stream
        packet.pts = packet.dts = ms - self._first_ms
        packet.time_base = MS
        packet.is_keyframe = keyframe
        try:
            self._container.mux(packet)
        except av.FFmpegError as exc:
            log.warning("recording %s: could not write a %s packet: %s", self.path.name, kind, exc)

    async def _pump_video(self) -> None:
        while True:
            packet = await self._video.recv()
            data = bytes(packet)
            ms = int(packet.pts or 0) * 1000 // CLOCK_RATE
            keyframe = not data[0] & 0x01
            if self._container is None:
                size = vp8_keyframe_size(data)
                if size is None:
                    continue
                self._open(*size)
                self._first_ms = ms
            self._mux("video", data, ms, keyframe)

    async def _pump_audio(self) -> None:
        while True:
            got = await self._audio.recv()
            if isinstance(got, AudioFrame):
                for packet in self._encode(got):
                    self._mux("audio", bytes(packet), int(packet.pts or 0) * 1000 // RATE)
            else:
                self._mux("audio", bytes(got), int(got.pts or 0) * 1000 // RATE)

    def _encode(self, frame: AudioFrame) -> list[Packet[Any]]:
        if self._encoder is None or self._resampler is None:
            return []
        packets: list[Packet[Any]] = []
        for stereo in self._resampler.resample(frame):
            stereo.pts = frame.pts
            packets += self._encoder.encode(stereo)
        return packets


def _close(container: OutputContainer, path: Path) -> None:
    container.close()
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
