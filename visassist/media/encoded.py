"""Encoded media through aiortc without its codecs: the seam the forwarding engine rests on.

aiortc has no public API for forwarding, so we hook it at its narrowest points (aiortc 1.16, pinned
in pyproject.toml; tests/test_encoded.py fails loudly if an upgrade moves any of them):

- Receiving: each RTCRtpReceiver runs a thread that hands every frame its jitter buffer reassembled
  to a decoder from `aiortc.rtcrtpreceiver.get_decoder(codec)`. For codecs we marked (by replacing a
  transceiver's negotiated `_codecs` with `ForwardedCodec` copies) that lookup returns `Passthrough`,
  which hands on the frame still encoded, as an `EncodedFrame`. Every other peer in the process (the
  tests' own aiortc clients) keeps aiortc's decoders.
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
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import aiortc.rtcrtpreceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av import Packet

log = logging.getLogger(__name__)

# The codecs we forward. Every browser sends and receives both; a viewer must get the codec its
# sender used, so our peers negotiate nothing else.
FORWARDED = {"video": "video/vp8", "audio": "audio/opus"}


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

    def packet(self, timestamp: int) -> Packet[Any]:
        """An av.Packet for an RTCRtpSender to pack, stamped with the sender's own timeline."""
        packet = Packet(self.data)
        packet.pts = timestamp
        packet.time_base = Fraction(1, self.clock_rate)
        return packet


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) if `data` is a VP8 keyframe (RFC 6386 section 9.1), else None."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width, height = struct.unpack_from("<HH", data, 6)
    return width & 0x3FFF, height & 0x3FFF


class Passthrough:
    """Stands where aiortc's decoder would: returns each frame encoded, in its decoder thread."""

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
                             size=size)]


@dataclasses.dataclass
class ForwardedCodec(RTCRtpCodecParameters):
    """A negotiated codec whose frames our receivers hand on undecoded."""


_aiortc_get_decoder: Callable[[RTCRtpCodecParameters], Any] = (
    aiortc.rtcrtpreceiver.get_decoder)  # type: ignore[attr-defined]


def _get_decoder(codec: RTCRtpCodecParameters) -> Any:
    if isinstance(codec, ForwardedCodec):
        return Passthrough(codec)
    return _aiortc_get_decoder(codec)


def install() -> None:
    """Put our decoder lookup in aiortc's receiver (idempotent; other codecs still decode)."""
    aiortc.rtcrtpreceiver.get_decoder = _get_decoder  # type: ignore[attr-defined]


def forward(transceiver: Any) -> None:
    """Negotiate only the forwarded codec (and its RTX) on `transceiver`, and receive it undecoded.

    Call between setRemoteDescription and createAnswer: aiortc answers with `transceiver._codecs`
    and gives the same list to its receiver when the connection starts.
    """
    wanted = FORWARDED.get(transceiver.kind)
    codecs: list[RTCRtpCodecParameters] = list(transceiver._codecs)
    main = next((c for c in codecs if c.mimeType.lower() == wanted), None)
    if main is None:
        raise CodecNotOffered(f"{transceiver.kind} must be offered as {wanted}")
    kept = [main] + [c for c in codecs if c.mimeType.lower() == f"{transceiver.kind}/rtx"
                     and c.parameters.get("apt") == main.payloadType]
    transceiver._codecs = [
        ForwardedCodec(**{f.name: getattr(c, f.name) for f in dataclasses.fields(c)}) for c in kept
    ]


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
