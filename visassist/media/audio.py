"""Voice: each speaker's audio is buffered (briefly, boundedly) and every listener gets a mix of the others.

A mix per listener, not a track per speaker: the customer hears the agent and the expert without their
page renegotiating when someone joins. Buffers hold at most MAX_BUFFER_MS; a late speaker's oldest
audio is dropped rather than delayed, so latency never builds up.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, AudioResampler

RATE = 48_000
PTIME = 0.020
SAMPLES = int(RATE * PTIME)  # per 20 ms frame
MAX_BUFFER_MS = 200
IDLE_POLL = 0.1  # seconds between looks for a speaker while nobody is audible
_MAX_SAMPLES = RATE * MAX_BUFFER_MS // 1000


class AudioInput:
    """One speaker's decoded audio, mono 48 kHz int16, at most MAX_BUFFER_MS of it."""

    def __init__(self) -> None:
        self._buffer = np.zeros(0, dtype=np.int16)
        self._pump: asyncio.Task[None] | None = None

    def attach(self, track: MediaStreamTrack) -> None:
        self.detach()
        self._pump = asyncio.create_task(self._run(track), name="audio-input")

    def detach(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        self._buffer = np.zeros(0, dtype=np.int16)

    def push(self, samples: np.ndarray) -> None:
        self._buffer = np.concatenate((self._buffer, samples))[-_MAX_SAMPLES:]

    def take(self, count: int) -> np.ndarray | None:
        """The next `count` samples, or None when this speaker has nothing buffered."""
        if self._buffer.size == 0:
            return None
        chunk, self._buffer = self._buffer[:count], self._buffer[count:]
        return chunk

    async def _run(self, track: MediaStreamTrack) -> None:
        resampler = AudioResampler(format="s16", layout="mono", rate=RATE)  # one per track: it keeps state
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, AudioFrame):
                    for out in resampler.resample(frame):
                        self.push(out.to_ndarray().reshape(-1).astype(np.int16))


class MixTrack(MediaStreamTrack):
    """What one listener hears: the sum of the other speakers, paced at 20 ms frames."""

    kind = "audio"

    def __init__(self, speakers: Callable[[], list[AudioInput]]) -> None:
        super().__init__()
        self._speakers = speakers
        self._start: float | None = None
        self._timestamp = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        # While nobody can be heard, send nothing at all (as a browser's DTX does) rather than
        # encoding fifty frames of silence a second for every listener.
        speakers = self._speakers()
        while not speakers:
            await asyncio.sleep(IDLE_POLL)
            if self.readyState != "live":
                raise MediaStreamError
            speakers = self._speakers()
        now = time.time()
        if self._start is None:
            self._start = now
        else:
            self._timestamp += SAMPLES
            behind = now - (self._start + self._timestamp / RATE)
            if behind > IDLE_POLL:
                # Back from a quiet spell: keep the RTP clock on wall time, skip the gap.
                self._timestamp += int(behind * RATE) // SAMPLES * SAMPLES
            await asyncio.sleep(self._start + self._timestamp / RATE - time.time())
        mix = np.zeros(SAMPLES, dtype=np.int32)
        for speaker in speakers:
            chunk = speaker.take(SAMPLES)
            if chunk is not None:
                mix[: chunk.size] += chunk
        samples = np.clip(mix, -32768, 32767).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, RATE)
        return frame
