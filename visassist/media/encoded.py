"""Encoded media through aiortc without its codecs: the seam the forwarding engine rests on.

aiortc has no public API for forwarding, so we hook it at its narrowest points (aiortc 1.16, pinned
in pyproject.toml; tests/test_encoded.py fails loudly if an upgrade moves any of them):

- Receiving: RTCRtpReceiver puts every frame its jitter buffer reassembled on a queue that its
  decoder thread reads. For our peers that queue is a `Handoff`, which puts the frame, still encoded,
  straight on the receiver's track as an `EncodedFrame`: no decoding, and no hop through a thread and
  back for each frame. The decoder thread waits idle until the receiver stops. The transceiver
  negotiates only the codec we forward (its `_codecs`, which aiortc answers with). Other peers in the
  process (the tests' own aiortc clients) keep aiortc's decoders.
- Reassembling: the receiver's video jitter buffer is a `Reassembly`, which gives up on a hole that
  retransmission did not fill within GAP_WAIT (aiortc's waits until 512 more packets overflow it: ~12 s
  of frozen picture after a 5 s network drop) and marks each frame that does not follow on from the
  one before, so viewers wait for a keyframe instead of decoding on a broken chain.
- Sending: RTCRtpSender packs an `av.Packet` from its track with the codec's `pack()` instead of
  encoding it. A viewer's PLI or FIR reaches the sender's `_send_keyframe()`, which we point at the
  track (an encoder would otherwise be told to make a keyframe, and there is none).
- Asking the phone for a keyframe: an RTCP PLI through the receiver's `_send_rtcp_pli(ssrc)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import struct
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add
from av import Packet

log = logging.getLogger(__name__)

# The codecs we forward. Every browser sends and receives both; a viewer must get the codec its
# sender used, so our peers negotiate nothing else.
FORWARDED = {"video": "video/vp8", "audio": "audio/opus"}
# Seconds a hole in the packets may wait for its retransmission (a NACK answered) before the frames
# behind it go on without it: a few round trips on a poor mobile link.
GAP_WAIT = 0.3


class CodecNotOffered(ValueError):
    """The remote side does not offer the codec we forward for this kind of media."""


@dataclasses.dataclass(slots=True)
class EncodedFrame:
    """One reassembled frame as the sender encoded it, with its RTP timestamp (from 0 per receiver)."""

    data: bytes
    timestamp: int
    clock_rate: int
    keyframe: bool
    size: tuple[int, int] | None = None  # (width, height), read from VP8 keyframes
    continuous: bool = True  # follows on from the frame before (False after lost packets)

    def packet(self, timestamp: int) -> Packet[Any]:
        """An av.Packet for an RTCRtpSender to pack, stamped with the sender's own timeline."""
        packet = Packet(self.data)
        packet.pts = timestamp
        packet.time_base = Fraction(1, self.clock_rate)
        return packet


class Timeline:
    """One rising RTP timeline for an outgoing track fed by streams that change (another source, a
    sender that reconnected): each new stream is shifted to continue from now, keeping its own spacing
    between frames, and no timestamp ever goes back."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.epoch = time.monotonic()
        self.last: int | None = None  # the last timestamp given out
        self._stream: object = None  # the stream our offset belongs to
        self._offset = 0

    def now(self) -> int:
        return int((time.monotonic() - self.epoch) * self.rate)

    def stamp(self, stream: object, timestamp: int, gap: int) -> int:
        """Our timestamp for a frame of `stream`; `gap` is the least step after another stream."""
        if stream != self._stream:
            now = self.now()
            self._offset = (now if self.last is None else max(now, self.last + gap)) - timestamp
            self._stream = stream
        timestamp += self._offset
        if self.last is not None and timestamp <= self.last:
            timestamp = self.last + 1
        self.last = timestamp
        return timestamp

    def own(self, timestamp: int) -> int:
        """A timestamp of our own making (a mix): the next forwarded stream starts afresh."""
        self._stream = None
        self.last = timestamp
        return timestamp


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) if `data` is a VP8 keyframe (RFC 6386 section 9.1), else None."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width, height = struct.unpack_from("<HH", data, 6)
    return width & 0x3FFF, height & 0x3FFF


class Reassembly(JitterBuffer):
    """aiortc's video jitter buffer, but a hole that is not filled within GAP_WAIT is skipped (with a
    keyframe request) rather than waited on until the buffer overflows, and every frame it gives out
    says whether it follows on from the previous one."""

    def __init__(self, capacity: int = 512) -> None:
        super().__init__(capacity, is_video=True)
        self._emitted_at: float | None = None  # when the last frame was given out (or packets began)
        self._next: int | None = None  # the sequence number the next frame must start at to follow on

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        keyframe_wanted, frame = super().add(packet)
        now = time.monotonic()
        if frame is not None or self._emitted_at is None:
            self._emitted_at = now
        elif now - self._emitted_at >= GAP_WAIT and (resume := self._after_hole()) is not None:
            # Packets keep coming but no frame can be made: what the hole held is not coming back.
            # (The wait restarts only with a frame, so a burst of holes after a drop goes at once.)
            self._origin = resume
            return True, self._remove_frame(packet.sequence_number)
        return keyframe_wanted, frame

    def _after_hole(self) -> int | None:
        """The first packet after the oldest hole, when packets wait behind one."""
        if self._origin is None:
            return None
        hole = False
        for n in range(self.capacity):
            sequence_number = uint16_add(self._origin, n)
            if self._packets[sequence_number % self.capacity] is None:
                hole = True
            elif hole:
                return sequence_number
        return None

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        first = self._origin
        frame = super()._remove_frame(sequence_number)
        if frame is not None:
            frame.continuous = first == self._next  # type: ignore[attr-defined]
            self._next = self._origin
        return frame


class Passthrough:
    """What a decoder would return for a frame, but still encoded (as an EncodedFrame)."""

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.clock_rate = int(codec.clockRate)
        self.video = codec.mimeType.lower().startswith("video/")

    def decode(self, encoded_frame: Any) -> list[EncodedFrame]:
        data = bytes(encoded_frame.data)
        if not data:
            return []
        size = vp8_keyframe_size(data) if self.video else None
        return [EncodedFrame(data=data, timestamp=int(encoded_frame.timestamp),
                             clock_rate=self.clock_rate, keyframe=size is not None or not self.video,
                             size=size, continuous=getattr(encoded_frame, "continuous", True))]


class Handoff:
    """Stands for a receiver's decoder queue: frames go to its track at once, on the event loop."""

    def __init__(self, track_queue: asyncio.Queue[Any]) -> None:
        self._track_queue = track_queue
        self._stopped = threading.Event()
        self._passthrough: dict[str, Passthrough] = {}

    def put(self, item: tuple[RTCRtpCodecParameters, Any] | None) -> None:
        if item is None:  # the receiver stops: let its thread end the track
            self._stopped.set()
            return
        codec, frame = item
        passthrough = self._passthrough.get(codec.mimeType)
        if passthrough is None:
            passthrough = self._passthrough[codec.mimeType] = Passthrough(codec)
        for out in passthrough.decode(frame):
            self._track_queue.put_nowait(out)

    def get(self) -> None:
        """What the receiver's decoder thread reads: nothing, until the receiver stops."""
        self._stopped.wait()


def forward(transceiver: Any) -> None:
    """Negotiate only the forwarded codec (and its RTX) on `transceiver`, and receive it undecoded.

    Call between setRemoteDescription and createAnswer: aiortc answers with `transceiver._codecs`,
    and starts the receiver (and its thread, reading the queue we put in place) only later.
    """
    wanted = FORWARDED.get(transceiver.kind)
    codecs: list[RTCRtpCodecParameters] = list(transceiver._codecs)
    main = next((c for c in codecs if c.mimeType.lower() == wanted), None)
    if main is None:
        raise CodecNotOffered(f"{transceiver.kind} must be offered as {wanted}")
    transceiver._codecs = [main] + [c for c in codecs if c.mimeType.lower() == f"{transceiver.kind}/rtx"
                                    and c.parameters.get("apt") == main.payloadType]
    receiver = transceiver.receiver
    if receiver.track is not None:
        # Fail loudly, never decode silently or freeze after a drop.
        if not hasattr(receiver, "_RTCRtpReceiver__decoder_queue") or (
                transceiver.kind == "video" and not hasattr(receiver, "_RTCRtpReceiver__jitter_buffer")):
            raise RuntimeError("this aiortc's receiver has no decoder queue or jitter buffer to replace; "
                               "pin aiortc 1.16")
        receiver._RTCRtpReceiver__decoder_queue = Handoff(receiver.track._queue)
        if transceiver.kind == "video":
            receiver._RTCRtpReceiver__jitter_buffer = Reassembly()


def on_keyframe_request(sender: Any, callback: Callable[[], None]) -> None:
    """Call `callback` when the viewer behind `sender` asks for a keyframe (RTCP PLI or FIR)."""
    sender._send_keyframe = callback


def request_keyframe(receiver: Any) -> None:
    """Ask the remote sender behind `receiver` for a keyframe (RTCP PLI), without waiting."""
    ssrcs = [source.source for source in receiver.getSynchronizationSources()]
    for ssrc in ssrcs:
        task = asyncio.ensure_future(receiver._send_rtcp_pli(ssrc))
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[Any]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is not None:
            log.warning("keyframe request failed: %s", task.exception())
