"""Voice: each listener hears everyone else, forwarded when that is one voice, mixed when it is more.

A listener gets one audio track, not a track per speaker, so pages never renegotiate when someone
joins. What flows on it depends on how many voices that listener can hear right now:
- one (the usual call: a customer and an agent): that speaker's Opus packets, forwarded as they came;
  nothing is decoded or encoded;
- several (an expert or a supervisor joined): the voices are decoded (each once, however many listen)
  and mixed into 20 ms frames that the listener's sender encodes;
- none: nothing at all is sent (as a browser's DTX does).
The track keeps one RTP timeline across these changes. Buffers are bounded: a speaker keeps at most
MAX_BUFFER_MS of decoded audio, a listener at most MAX_PACKETS forwarded packets; the oldest goes first,
so latency never builds up.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, AudioResampler, Packet

from visassist.media.encoded import EncodedFrame, Timeline

RATE = 48_000
PTIME = 0.020
SAMPLES = int(RATE * PTIME)  # per 20 ms frame
MAX_BUFFER_MS = 200
MAX_PACKETS = 10  # 200 ms of forwarded packets
IDLE_POLL = 0.1  # seconds between looks for a speaker while nobody is audible
PCM_LINGER = 0.5  # seconds a voice keeps decoding after the last mix that wanted it
_MAX_SAMPLES = RATE * MAX_BUFFER_MS // 1000


class Voice:
    """One speaker: Opus packets as they arrive, decoded to mono 48 kHz only while a mix needs them."""

    def __init__(self) -> None:
        self.generation = 0
        self._buffer = np.zeros(0, dtype=np.int16)
        self._pump: asyncio.Task[None] | None = None
        self._listeners: set[VoiceTrack] = set()
        self._pcm_until = 0.0
        self._decoder: av.AudioCodecContext | None = None
        self._resampler: AudioResampler | None = None

    def attach(self, track: MediaStreamTrack) -> None:
        self.detach()
        self.generation += 1
        self._pump = asyncio.create_task(self._run(track), name="voice")

    def detach(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        self._buffer = np.zeros(0, dtype=np.int16)
        self._decoder = self._resampler = None

    def want_pcm(self) -> None:
        """A mix is reading this voice: decode what arrives for a little while."""
        self._pcm_until = time.monotonic() + PCM_LINGER

    def push(self, samples: np.ndarray) -> None:
        self._buffer = np.concatenate((self._buffer, samples))[-_MAX_SAMPLES:]

    def take(self, count: int) -> np.ndarray | None:
        """The next `count` samples, or None when this speaker has nothing buffered."""
        if self._buffer.size == 0:
            return None
        chunk, self._buffer = self._buffer[:count], self._buffer[count:]
        return chunk

    def publish(self, frame: EncodedFrame) -> None:
        for listener in list(self._listeners):
            listener.deliver(self, frame)
        if time.monotonic() < self._pcm_until:
            self._decode(frame)

    def _decode(self, frame: EncodedFrame) -> None:
        if self._decoder is None:
            self._decoder = av.CodecContext.create("opus", "r")
            # One resampler per stream: it keeps state between frames.
            self._resampler = AudioResampler(format="s16", layout="mono", rate=RATE)
        assert self._decoder is not None and self._resampler is not None
        try:
            decoded = self._decoder.decode(Packet(frame.data))
        except av.FFmpegError:
            return  # a damaged packet: a 20 ms gap, as the browser's own decoder would conceal
        for pcm in decoded:
            for out in self._resampler.resample(pcm):
                self.push(out.to_ndarray().reshape(-1).astype(np.int16))

    async def _run(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, EncodedFrame):
                    self.publish(frame)


class VoiceTrack(MediaStreamTrack):
    """What one listener hears: the one audible voice forwarded, or several mixed, paced at 20 ms."""

    kind = "audio"

    def __init__(self, speakers: Callable[[], list[Voice]]) -> None:
        super().__init__()
        self._speakers = speakers
        self._forwarding: Voice | None = None
        self._packets: deque[tuple[Voice, int, EncodedFrame]] = deque(maxlen=MAX_PACKETS)
        self._wake = asyncio.Event()
        self._timeline = Timeline(RATE)

    def deliver(self, voice: Voice, frame: EncodedFrame) -> None:
        if voice is self._forwarding:
            self._packets.append((voice, voice.generation, frame))
            self._wake.set()

    async def recv(self) -> Packet[Any] | AudioFrame:
        while self.readyState == "live":
            speakers = self._speakers()
            if len(speakers) == 1:
                packet = await self._forwarded(speakers[0])
                if packet is not None:
                    return packet
            elif speakers:
                self._forward(None)
                return await self._mixed(speakers)
            else:
                self._forward(None)
                await asyncio.sleep(IDLE_POLL)
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._forward(None)
        self._wake.set()

    def _forward(self, voice: Voice | None) -> None:
        if voice is self._forwarding:
            return
        if self._forwarding is not None:
            self._forwarding._listeners.discard(self)
        self._forwarding = voice
        self._packets.clear()
        if voice is not None:
            voice._listeners.add(self)

    async def _forwarded(self, voice: Voice) -> Packet[Any] | None:
        """The next packet of `voice`, or None after IDLE_POLL without one (to look at who speaks)."""
        self._forward(voice)
        if not self._packets:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_POLL):
                    await self._wake.wait()
            if not self._packets:
                return None
        source, generation, frame = self._packets.popleft()
        # Another voice (or the same one reconnected) continues our timeline from now on.
        return frame.packet(self._timeline.stamp((id(source), generation), frame.timestamp, SAMPLES))

    async def _mixed(self, speakers: list[Voice]) -> AudioFrame:
        for speaker in speakers:
            speaker.want_pcm()
        timeline = self._timeline
        now = timeline.now()
        timestamp = now if timeline.last is None else timeline.last + SAMPLES
        if timestamp < now - int(IDLE_POLL * RATE):
            timestamp = now  # back from a quiet spell: keep the RTP clock on wall time, skip the gap
        await asyncio.sleep(max(0.0, timeline.epoch + timestamp / RATE - time.monotonic()))
        timeline.own(timestamp)
        mix = np.zeros(SAMPLES, dtype=np.int32)
        for speaker in speakers:
            chunk = speaker.take(SAMPLES)
            if chunk is not None:
                mix[: chunk.size] += chunk
        samples = np.clip(mix, -32768, 32767).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = timestamp
        frame.time_base = fractions.Fraction(1, RATE)
        return frame
