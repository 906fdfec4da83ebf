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
import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import MediaDescription, SessionDescription, candidate_from_sdp

from visassist.media import encoded

log = logging.getLogger(__name__)

# Bounds of an offer (docs/protocol.md, "Limits"). Its size is bounded by the message (MAX_SDP_CHARS).
MAX_MEDIA_SECTIONS = 8  # a customer sends 4: voice, camera, screen, and the staff screen coming back
MAX_CANDIDATES = 64  # per offer: those in its SDP and those trickled after it, together

# aiortc compares fingerprints only once the DTLS handshake runs, in a background task: a malformed
# one is refused here instead, while the client can still be told.
FINGERPRINT_BYTES = {"sha-256": 32, "sha-384": 48, "sha-512": 64}
_HEX_PAIRS = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*")
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")  # RFC 8839 ice-char
_CANDIDATE = re.compile(  # foundation component transport priority address port "typ" type [extensions]
    r"(?:candidate:)?[A-Za-z0-9+/]{1,32} [0-9]{1,3} [A-Za-z]{1,8} [0-9]{1,10} \S{1,255} [0-9]{1,5} typ "
    r"(?:host|srflx|prflx|relay)(?: \S{1,255} \S{1,255})*")
_RPORT = re.compile(r" rport (\S+)")


class PeerError(Exception):
    """The offer or a candidate could not be used; the message is safe to show to the client."""


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:120]


def read_candidate(text: str) -> RTCIceCandidate | None:
    """A trickled or offered candidate, or None for one that is never used: TCP (we only do UDP), and
    addresses that are names (`<uuid>.local` hides a browser's host address: resolving it by mDNS takes
    aioice up to a second per candidate, and no other name is resolved either)."""
    if not _CANDIDATE.fullmatch(text):
        raise PeerError("the ICE candidate could not be parsed")
    parsed = candidate_from_sdp(text.removeprefix("candidate:"))
    rport = _RPORT.search(text)
    if not (1 <= parsed.component <= 256 and parsed.priority < 2**32 and parsed.port <= 65535
            and (rport is None or (rport.group(1).isascii() and rport.group(1).isdigit()
                                   and int(rport.group(1)) <= 65535))):
        raise PeerError("the ICE candidate is out of range")
    if parsed.protocol.lower() != "udp":
        return None
    try:
        ipaddress.ip_address(parsed.ip)
    except ValueError:
        return None
    if parsed.port == 0:
        raise PeerError("the ICE candidate is out of range")
    return parsed


@dataclass(frozen=True)
class Offered:
    """An offer checked before aiortc sees it, with the candidates that are never used taken out."""

    description: SessionDescription
    sdp: str
    candidates: int  # how many it carried, those taken out included


def read_offer(sdp: str) -> Offered:
    kept, candidates = [], 0
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            candidates += 1
            if candidates > MAX_CANDIDATES:
                raise PeerError(f"the offer has more than {MAX_CANDIDATES} ICE candidates")
            if read_candidate(line[2:]) is None:
                continue
        kept.append(line)
    text = "\r\n".join(kept) + "\r\n"
    if not text.startswith("v=0\r\n"):
        raise PeerError("the offer does not start with v=0")
    try:
        # aiortc's parser fails with whatever the line breaks: AssertionError, StopIteration, KeyError…
        description = SessionDescription.parse(text)
    except Exception as exc:
        raise PeerError(f"the offer could not be parsed: {_short(exc)}") from None
    if not description.media:
        raise PeerError("the offer has no media sections")
    if len(description.media) > MAX_MEDIA_SECTIONS:
        raise PeerError(f"the offer has more than {MAX_MEDIA_SECTIONS} media sections")
    mids = [m.rtp.muxId for m in description.media]
    if len(set(mids)) != len(mids) or not all(mids):
        raise PeerError("every media section needs its own mid")
    # aiortc moves bundled sections onto the first mid's transport: one that does not exist is None,
    # and its connect task fails later, in the background.
    if any(g.semantic == "BUNDLE" and not set(g.items) <= set(mids) for g in description.group):
        raise PeerError("a=group:BUNDLE names a mid the offer does not have")
    for media in description.media:
        _check_section(media)
    return Offered(description=description, sdp=text, candidates=candidates)


def _check_section(m: MediaDescription) -> None:
    where = f"media section {m.rtp.muxId!r}"
    if m.kind not in ("audio", "video"):
        raise PeerError(f"{where}: only audio and video are used, not {str(m.kind)[:20]!r}")
    if not all(0 <= pt <= 127 for pt in m.fmt):  # RTP has 7 bits for it
        raise PeerError(f"{where}: payload types are 0 to 127")
    if not all(1 <= ext.id <= 255 for ext in m.rtp.headerExtensions):
        raise PeerError(f"{where}: header extension ids are 1 to 255")
    ufrag = (m.ice.usernameFragment if m.ice else None) or ""
    pwd = (m.ice.password if m.ice else None) or ""
    if not (4 <= len(ufrag) <= 256 and 22 <= len(pwd) <= 256
            and _ICE_CHARS.fullmatch(ufrag) and _ICE_CHARS.fullmatch(pwd)):
        raise PeerError(f"{where}: a=ice-ufrag (4 to 256 characters) and a=ice-pwd (22 to 256) are "
                        "needed")
    if m.dtls is None or not m.dtls.fingerprints:
        raise PeerError(f"{where}: a=setup and a=fingerprint are needed")
    for fingerprint in m.dtls.fingerprints:
        size = FINGERPRINT_BYTES.get(fingerprint.algorithm.lower())
        if size is None:
            raise PeerError(f"{where}: fingerprints are sha-256, sha-384 or sha-512")
        if not (_HEX_PAIRS.fullmatch(fingerprint.value) and len(fingerprint.value) == 3 * size - 1):
            raise PeerError(f"{where}: a {fingerprint.algorithm} fingerprint is {size} hex pairs")


# outgoing(kind, mid, remote direction) -> the track to send on that section, or None
Outgoing = Callable[[str, str, str], MediaStreamTrack | None]
# on_track(track, mid, request_keyframe) for each section the browser sends on
OnTrack = Callable[[MediaStreamTrack, str | None, Callable[[], None]], None]


class Peer:
    def __init__(self, configuration: RTCConfiguration, *, outgoing: Outgoing | None = None,
                 on_track: OnTrack | None = None, on_failed: Callable[[], None] | None = None) -> None:
        self.pc = RTCPeerConnection(configuration)
        self._outgoing = outgoing
        self._pending: list[RTCIceCandidate | None] = []
        self._candidates = 0  # received for this offer, in its SDP and trickled
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
        offered = read_offer(sdp)
        self._candidates += offered.candidates
        if self._candidates > MAX_CANDIDATES:
            raise PeerError(f"more than {MAX_CANDIDATES} ICE candidates for one offer")
        directions = {m.rtp.muxId: m.direction for m in offered.description.media}
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offered.sdp, type="offer"))
            for transceiver in self.pc.getTransceivers():
                encoded.forward(transceiver)
        except encoded.CodecNotOffered as exc:
            raise PeerError(f"this browser cannot be served: {exc}") from exc
        except Exception as exc:
            # aiortc refuses what it cannot use with any exception (ValueError, AssertionError…).
            raise PeerError(f"the offer could not be used: {_short(exc)}") from exc
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
            await self._add(pending)
        self._pending.clear()
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            raise PeerError(f"no answer could be made to the offer: {_short(exc)}") from exc
        return str(self.pc.localDescription.sdp)

    async def add_candidate(self, candidate: str | None, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        parsed = None
        if candidate:
            self._candidates += 1
            if self._candidates > MAX_CANDIDATES:
                raise PeerError(f"more than {MAX_CANDIDATES} ICE candidates for one offer")
            # Checked and, for names and TCP, dropped right here: nothing below may wait on the network,
            # as the socket's next message waits for this one.
            parsed = read_candidate(candidate)
            if parsed is None:
                return
            parsed.sdpMid = sdp_mid
            parsed.sdpMLineIndex = 0 if sdp_mid is None and sdp_mline_index is None else sdp_mline_index
        if not self._described:
            if parsed is not None or None not in self._pending:  # one end of candidates is enough
                self._pending.append(parsed)
            return
        await self._add(parsed)

    async def _add(self, candidate: RTCIceCandidate | None) -> None:
        # aiortc refuses a candidate after the end of candidates with a ValueError: simply ignored.
        with contextlib.suppress(ValueError):
            await self.pc.addIceCandidate(candidate)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), timeout=5)
