"""The seam in aiortc that forwarding rests on: if an aiortc upgrade moves any part of it, these fail.

Each test drives real aiortc objects (a server Peer answering an aiortc client on loopback, or aiortc's
own RTCP handling) rather than our assumptions about them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket, RtpPacket
from aiortc.sdp import SessionDescription

from tests.utils import MarkerTrack, QuietTrack, vp8_frames
from visassist.media import encoded
from visassist.media.encoded import EncodedFrame, vp8_keyframe_size
from visassist.media.feed import FeedTrack, VideoFeed
from visassist.media.peer import Peer, PeerError

CONFIG = RTCConfiguration(iceServers=[])


def test_vp8_keyframes_are_recognised_with_their_size() -> None:
    frames = vp8_frames(3, 352, 288)
    assert vp8_keyframe_size(frames[0].data) == (352, 288)
    assert [vp8_keyframe_size(f.data) for f in frames[1:]] == [None, None]
    assert vp8_keyframe_size(b"\x00\x01") is None


@pytest.fixture
async def closing() -> AsyncIterator[list[RTCPeerConnection | Peer]]:
    peers: list[RTCPeerConnection | Peer] = []
    yield peers
    for peer in peers:
        await peer.close()


async def connect(client: RTCPeerConnection, server: Peer) -> str:
    await client.setLocalDescription(await client.createOffer())
    answer = await server.answer(client.localDescription.sdp)
    await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return answer


async def test_received_frames_stay_encoded_and_only_vp8_and_opus_are_negotiated(
    closing: list[RTCPeerConnection | Peer],
) -> None:
    received: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    asks: list[object] = []
    pumps: list[asyncio.Future[None]] = []

    def on_track(track: MediaStreamTrack, mid: str | None, request_keyframe: object) -> None:
        asks.append(request_keyframe)

        async def pump() -> None:
            while True:
                await received.put((track.kind, await track.recv()))
        pumps.append(asyncio.ensure_future(pump()))

    server = Peer(CONFIG, on_track=on_track)
    client = RTCPeerConnection(CONFIG)
    closing += [client, server]
    client.addTransceiver(MarkerTrack(640, 480), direction="sendonly")
    client.addTransceiver(AudioStreamTrack(), direction="sendonly")
    answer = SessionDescription.parse(await connect(client, server))
    video, audio = answer.media
    assert {c.mimeType for c in video.rtp.codecs} == {"video/VP8", "video/rtx"}
    assert {c.mimeType for c in audio.rtp.codecs} == {"audio/opus"}

    kinds: dict[str, EncodedFrame] = {}
    async with asyncio.timeout(10):
        while len(kinds) < 2:
            kind, frame = await received.get()
            assert isinstance(frame, EncodedFrame), f"aiortc decoded the {kind} instead of handing it on"
            kinds.setdefault(kind, frame)
    assert kinds["video"].keyframe and kinds["video"].size == (640, 480)
    assert kinds["video"].clock_rate == 90_000 and kinds["audio"].clock_rate == 48_000
    for pump in pumps:
        pump.cancel()


async def test_other_peers_in_the_process_still_decode(closing: list[RTCPeerConnection | Peer]) -> None:
    """The hook is on our peers' receivers only: an aiortc client receiving from the server decodes."""
    feed = VideoFeed("camera")
    server = Peer(CONFIG, outgoing=lambda kind, mid, direction: FeedTrack(feed) if kind == "video" else None)
    viewer = RTCPeerConnection(CONFIG)
    closing += [viewer, server]
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    viewer.on("track", tracks.put_nowait)
    viewer.addTransceiver("video", direction="recvonly")
    await connect(viewer, server)
    feed.attach(QuietTrack(), lambda: None)  # a live feed we publish into ourselves
    for frame in vp8_frames(10, 320, 240):
        feed.publish(frame)
    picture = await asyncio.wait_for((await asyncio.wait_for(tracks.get(), 5)).recv(), 10)
    assert (picture.width, picture.height) == (320, 240)
    await feed.close()


async def test_an_offer_without_vp8_is_refused_plainly(closing: list[RTCPeerConnection | Peer]) -> None:
    client = RTCPeerConnection(CONFIG)
    closing.append(client)
    transceiver = client.addTransceiver(MarkerTrack(), direction="sendonly")
    codecs = transceiver.sender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType == "video/H264"])
    await client.setLocalDescription(await client.createOffer())
    server = Peer(CONFIG)
    closing.append(server)
    with pytest.raises(PeerError, match="vp8"):
        await server.answer(client.localDescription.sdp)


async def test_a_viewers_pli_and_fir_reach_the_track(closing: list[RTCPeerConnection | Peer]) -> None:
    asked: list[str] = []
    client = RTCPeerConnection(CONFIG)
    sender = client.addTransceiver("video", direction="sendonly").sender
    closing.append(client)
    encoded.on_keyframe_request(sender, lambda: asked.append("keyframe"))
    for fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=fmt, ssrc=1, media_ssrc=sender._ssrc))
    assert asked == ["keyframe", "keyframe"]


async def test_a_keyframe_request_reaches_the_phone(closing: list[RTCPeerConnection | Peer]) -> None:
    asks: asyncio.Queue[object] = asyncio.Queue()
    server = Peer(CONFIG, on_track=lambda track, mid, request: asks.put_nowait((track, request)))
    phone = RTCPeerConnection(CONFIG)
    closing += [phone, server]
    sender = phone.addTransceiver(MarkerTrack(), direction="sendonly").sender
    heard = asyncio.Event()
    encoded.on_keyframe_request(sender, heard.set)
    await connect(phone, server)
    track, request = await asyncio.wait_for(asks.get(), 5)
    await asyncio.wait_for(track.recv(), 10)  # media flows, so the phone's SSRC is known
    request()
    await asyncio.wait_for(heard.wait(), 5)


def rtp(sequence_number: int, timestamp: int, payload: bytes = b"x") -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=sequence_number, timestamp=timestamp)
    packet._data = payload  # what aiortc's receiver puts there: the depacketized bytes
    return packet


def test_a_hole_that_retransmission_fills_in_time_keeps_the_chain() -> None:
    buffer = encoded.Reassembly()
    assert buffer.add(rtp(10, 0)) == (False, None)
    assert buffer.add(rtp(12, 3000)) == (False, None)  # 11 is missing: a NACK asks for it again
    pli, frame = buffer.add(rtp(11, 0))  # ...and it comes: frame 0 (packets 10 and 11) is complete
    assert not pli and frame is not None and frame.data == b"xx" and frame.timestamp == 0
    pli, frame = buffer.add(rtp(13, 6000))
    assert frame is not None and frame.timestamp == 3000 and frame.continuous  # type: ignore[attr-defined]


def test_a_hole_that_stays_is_skipped_with_a_keyframe_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a network drop the packets that were lost never come: aiortc's buffer would wait for 512
    more packets (~12 s of frozen picture); ours goes on after GAP_WAIT and says the chain broke."""
    now = [100.0]
    monkeypatch.setattr(encoded.time, "monotonic", lambda: now[0])
    buffer = encoded.Reassembly()
    buffer.add(rtp(1, 0))
    pli, first = buffer.add(rtp(2, 3000))
    assert first is not None and first.timestamp == 0
    buffer.add(rtp(500, 900_000))  # the network is back: 497 packets were lost in the drop
    now[0] += 0.1
    assert buffer.add(rtp(501, 903_000)) == (False, None), "a moment for retransmission first"
    now[0] += encoded.GAP_WAIT
    pli, frame = buffer.add(rtp(502, 906_000))
    assert pli, "the phone is asked for a keyframe"
    assert frame is not None and frame.timestamp == 900_000
    assert not frame.continuous  # type: ignore[attr-defined]
    pli, frame = buffer.add(rtp(503, 909_000))
    assert frame is not None and frame.timestamp == 903_000 and frame.continuous  # type: ignore[attr-defined]


async def test_reassembly_replaces_the_video_receivers_jitter_buffer(
        closing: list[RTCPeerConnection | Peer]) -> None:
    server, client = Peer(CONFIG), RTCPeerConnection(CONFIG)
    closing += [client, server]
    client.addTransceiver(MarkerTrack(320, 240), direction="sendonly")
    await connect(client, server)
    receiver = server.pc.getTransceivers()[0].receiver
    assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, encoded.Reassembly)
