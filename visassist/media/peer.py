"""One server-side RTCPeerConnection per participant, answering the browser's offer.

The browser sends its offer at once and trickles its candidates after; candidates that arrive before
the offer has been applied wait in a short list. aiortc has no ICE restart: a participant whose
connection failed sends a fresh offer and gets a fresh peer (the caller closes the old one).
Media is forwarded, never transcoded: every section negotiates VP8 or Opus only, received frames stay
encoded, and outgoing tracks yield encoded frames (see visassist.media.encoded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription, candidate_from_sdp

from visassist.media import encoded

log = logging.getLogger(__name__)

MAX_PENDING_CANDIDATES = 64


class PeerError(Exception):
    """The offer or a candidate could not be used; the message is safe to show to the client."""


# outgoing(kind, mid, remote direction) -> the track to send on that section, or None
Outgoing = Callable[[str, str, str], MediaStreamTrack | None]
# on_track(track, mid, request_keyframe) for each section the browser sends on
OnTrack = Callable[[MediaStreamTrack, str | None, Callable[[], None]], None]


class Peer:
    def __init__(self, configuration: RTCConfiguration, *, outgoing: Outgoing | None = None,
                 on_track: OnTrack | None = None, on_failed: Callable[[], None] | None = None) -> None:
        self.pc = RTCPeerConnection(configuration)
        self._outgoing = outgoing
        self._pending: list[tuple[str | None, str | None, int | None]] = []
        self._described = False
        if on_failed is not None:
            failed = on_failed

            @self.pc.on("connectionstatechange")
            def _on_state() -> None:
                # ICE gave up (no answer to its consent checks for 30 s) or DTLS failed: nothing on this
                # connection will flow again, and only the browser can start another (it offers).
                if self.pc.connectionState == "failed":
                    failed()
        if on_track is not None:
            callback = on_track

            @self.pc.on("track")
            def _on_track(track: MediaStreamTrack) -> None:
                transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
                callback(track, transceiver.mid,
                         lambda: encoded.request_keyframe(transceiver.receiver))

    async def answer(self, sdp: str) -> str:
        try:
            parsed = SessionDescription.parse(sdp)
            if not parsed.media:
                raise PeerError("the offer has no media sections")
            directions = {m.rtp.muxId: m.direction for m in parsed.media}
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            for transceiver in self.pc.getTransceivers():
                encoded.forward(transceiver)
        except encoded.CodecNotOffered as exc:
            raise PeerError(f"this browser cannot be served: {exc}") from exc
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise PeerError(f"the offer could not be used: {exc}") from exc
        for transceiver in self.pc.getTransceivers():
            remote = directions.get(transceiver.mid or "") or "inactive"
            if self._outgoing is None or remote not in ("recvonly", "sendrecv"):
                continue
            track = self._outgoing(transceiver.kind, transceiver.mid or "", remote)
            if track is not None:
                transceiver.sender.replaceTrack(track)
                asks = getattr(track, "request_keyframe", None)
                if asks is not None:
                    encoded.on_keyframe_request(transceiver.sender, asks)
                transceiver.direction = "sendrecv" if remote == "sendrecv" else "sendonly"
        self._described = True
        for pending in self._pending:
            await self._add_candidate(*pending)
        self._pending.clear()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def add_candidate(self, candidate: str | None, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        if not self._described:
            if len(self._pending) >= MAX_PENDING_CANDIDATES:
                raise PeerError("too many ICE candidates before the offer")
            self._pending.append((candidate, sdp_mid, sdp_mline_index))
            return
        await self._add_candidate(candidate, sdp_mid, sdp_mline_index)

    async def _add_candidate(self, candidate: str | None, sdp_mid: str | None,
                             sdp_mline_index: int | None) -> None:
        if not candidate:
            await self.pc.addIceCandidate(None)  # end of candidates
            return
        text = candidate.removeprefix("candidate:")
        try:
            parsed = candidate_from_sdp(text)
        except (ValueError, IndexError) as exc:
            raise PeerError("the ICE candidate could not be parsed") from exc
        if sdp_mid is None and sdp_mline_index is None:
            sdp_mline_index = 0
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        # Candidates for transports we will never use (mDNS names, TCP) are simply ignored.
        with contextlib.suppress(ValueError):
            await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), timeout=5)
