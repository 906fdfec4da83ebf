"""Hostile clients: every bad message is answered with a documented error code, never an internal error,
a traceback or a closed socket. Offers and candidates are checked before aiortc sees them."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from aiortc import RTCConfiguration
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests.utils import CHROMIUM_OFFER, Clock, FakeParticipant, token_of
from visassist.app import create_app
from visassist.config import Settings
from visassist.context import AppContext
from visassist.media.peer import MAX_CANDIDATES, MAX_MEDIA_SECTIONS, Peer, PeerError, read_offer
from visassist.signalling.protocol import (
    CLIENT_MESSAGE_TYPES,
    SERVER_MESSAGE_TYPES,
    EndSession,
    ErrorCode,
    ProtocolError,
    parse_client_message,
)
from visassist.tokens import digest, new_api_key, new_id

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_CANDIDATES = [  # what the same page trickled, host addresses hidden behind mDNS names
    "candidate:1644383164 1 udp 2113937151 e847b002-2bf3-40e9-b8bf-372a3ab25317.local 58306 typ host"
    " generation 0 ufrag GHEC network-cost 999",
    "candidate:1701914380 1 udp 2113942271 6019a9f3-0223-41f7-ba86-ca5b52cee20f.local 45661 typ host"
    " generation 0 ufrag GHEC network-cost 999",
    "candidate:842163049 1 udp 1677729535 192.0.2.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0",
    "candidate:3 1 tcp 1518280447 192.0.2.7 9 typ host tcptype active generation 0",
]
CONFIG = RTCConfiguration(iceServers=[])


def edited(sdp: str, old: str, new: str, count: int = -1) -> str:
    assert old in sdp, old
    return sdp.replace(old, new, count)


def without(sdp: str, prefix: str) -> str:
    return "".join(line for line in sdp.splitlines(keepends=True) if not line.startswith(prefix))


FINGERPRINT = re.search(r"a=fingerprint:sha-256 (\S+)", CHROMIUM_OFFER).group(1)  # type: ignore[union-attr]


@pytest.mark.parametrize(("sdp", "says"), [
    (edited(CHROMIUM_OFFER, "a=fingerprint:sha-256", "a=fingerprint:sha-1"), "sha-256, sha-384 or sha-512"),
    (edited(CHROMIUM_OFFER, "a=fingerprint:sha-256", "a=fingerprint:md5"), "sha-256, sha-384 or sha-512"),
    (edited(CHROMIUM_OFFER, FINGERPRINT, FINGERPRINT[:-3]), "32 hex pairs"),
    (edited(CHROMIUM_OFFER, FINGERPRINT, FINGERPRINT.replace("8A", "ZZ")), "32 hex pairs"),
    (edited(CHROMIUM_OFFER, FINGERPRINT, FINGERPRINT.replace(":", "")), "32 hex pairs"),
    (edited(CHROMIUM_OFFER, "a=fingerprint:sha-256", "a=fingerprint:sha-512"), "64 hex pairs"),
    (without(CHROMIUM_OFFER, "a=fingerprint"), "a=fingerprint are needed"),
    (without(CHROMIUM_OFFER, "a=setup"), "a=setup and a=fingerprint"),
    (without(CHROMIUM_OFFER, "a=ice-ufrag"), "a=ice-ufrag"),
    (without(CHROMIUM_OFFER, "a=ice-pwd"), "a=ice-pwd"),
    (edited(CHROMIUM_OFFER, "a=ice-ufrag:GHEC", "a=ice-ufrag:GH\u00e9C"), "a=ice-ufrag"),
    (without(CHROMIUM_OFFER, "a=mid"), "its own mid"),
    (edited(CHROMIUM_OFFER, "a=mid:1", "a=mid:0"), "its own mid"),
    (edited(CHROMIUM_OFFER, "m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=audio 9 UDP/TLS/RTP/SAVPF 200"),
     "payload types"),
    (edited(CHROMIUM_OFFER, "a=extmap:1 ", "a=extmap:300 "), "header extension ids"),
    (edited(CHROMIUM_OFFER, "m=audio 9 UDP/TLS/RTP/SAVPF", "m=application 9 UDP/DTLS/SCTP"), "only audio"),
    (edited(CHROMIUM_OFFER, "m=audio 9", "m=audio x"), "could not be parsed"),
    (edited(CHROMIUM_OFFER, "a=setup:actpass", "a=setup:sideways"), "could not be parsed"),
    (edited(CHROMIUM_OFFER, "a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus"), "could not be parsed"),
    (edited(CHROMIUM_OFFER, "a=fmtp:111 ", "a=fmtp:5 "), "could not be parsed"),  # aiortc: StopIteration
    (edited(CHROMIUM_OFFER, "c=IN IP4 0.0.0.0", "c=IN IP9 nowhere"), "could not be parsed"),
    (edited(CHROMIUM_OFFER, "BUNDLE 0 1 2", "BUNDLE 7 1 2"), "BUNDLE names a mid"),  # found by the fuzz test
    (without(CHROMIUM_OFFER, "m=audio"), "BUNDLE names a mid"),
    (edited(CHROMIUM_OFFER, "v=0", "v=1"), "v=0"),
    ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", "no media sections"),
    (CHROMIUM_OFFER + CHROMIUM_OFFER[CHROMIUM_OFFER.index("m=video"):].replace("a=mid:", "a=mid:x") * 4,
     f"more than {MAX_MEDIA_SECTIONS} media sections"),
    (CHROMIUM_OFFER + f"a=candidate:{CHROMIUM_CANDIDATES[2][10:]}\r\n" * (MAX_CANDIDATES + 1),
     f"more than {MAX_CANDIDATES} ICE candidates"),
    (CHROMIUM_OFFER + "a=candidate:1 1 udp 1 192.0.2.1 99999 typ host\r\n", "out of range"),
    (CHROMIUM_OFFER + "a=candidate:1 1 udp 1 192.0.2.1 9 typ bogus\r\n", "could not be parsed"),
])
def test_offers_aiortc_would_choke_on_are_refused_first(sdp: str, says: str) -> None:
    with pytest.raises(PeerError) as caught:
        read_offer(sdp)
    assert says in str(caught.value)


def test_the_chromium_offer_passes_and_its_unusable_candidates_are_taken_out() -> None:
    lines = "".join(f"a={c}\r\n" for c in CHROMIUM_CANDIDATES)
    offered = read_offer(CHROMIUM_OFFER.replace("a=mid:0\r\n", "a=mid:0\r\n" + lines, 1))
    assert offered.candidates == 4
    kept = [m.ice_candidates for m in offered.description.media]
    assert [(c.ip, c.protocol) for c in kept[0]] == [("192.0.2.7", "udp")], "no mDNS name, no TCP"
    assert [m.kind for m in offered.description.media] == ["audio", "video", "video"]


async def test_aiortc_failures_anywhere_in_answering_are_peer_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    peer = Peer(CONFIG)
    try:
        assert "a=fingerprint:sha-256" in await peer.answer(CHROMIUM_OFFER)
    finally:
        await peer.close()
    from aiortc import RTCPeerConnection

    async def broken(self: Any, *args: Any) -> None:
        raise AssertionError("aiortc's own assert")

    for step in ("setRemoteDescription", "createAnswer", "setLocalDescription"):
        with monkeypatch.context() as patch:
            patch.setattr(RTCPeerConnection, step, broken)
            peer = Peer(CONFIG)
            try:
                with pytest.raises(PeerError, match="aiortc's own assert"):
                    await peer.answer(CHROMIUM_OFFER)
            finally:
                await peer.close()


@pytest.mark.parametrize("candidate", [
    "candidate:", "candidate:1 1 udp", "candidate:1 x udp 1 192.0.2.1 9 typ host",
    "candidate:1 1 udp 99999999999 192.0.2.1 9 typ host", "candidate:1 1 udp 1 192.0.2.1 0 typ host",
    "candidate:1 1 udp 1 192.0.2.1 \u0661\u0662 typ host",  # int() would take Arabic-Indic digits
    "candidate:1 1 udp 1 192.0.2.1 9 typ srflx raddr 0.0.0.0 rport 70000",
    "candidate:1 1 udp 1 192.0.2.1 9 typ host generation",
])
async def test_malformed_candidates_are_peer_errors(candidate: str) -> None:
    peer = Peer(CONFIG)
    try:
        with pytest.raises(PeerError):
            await peer.add_candidate(candidate, "0", 0)
    finally:
        await peer.close()


# The fuzz test: one real server, one agent socket and one customer socket, many hostile frames.

BASES: dict[str, dict[str, Any]] = {}
for _text in re.findall(r"```json client\n(.*?)```", (ROOT / "docs/protocol.md").read_text(), re.S):
    _message = json.loads(_text)
    BASES.setdefault(_message["type"], _message)
BASES["offer"] = {"type": "offer", "sdp": CHROMIUM_OFFER}
BASES["ice"] = {"type": "ice", "candidate": CHROMIUM_CANDIDATES[2], "sdpMid": "0", "sdpMLineIndex": 0}
EXAMPLES = int(os.environ.get("VISASSIST_FUZZ_EXAMPLES", "600"))  # more for a longer hunt
SENTINEL = '{"type": "sentinel"}'  # answered with an error after everything sent before it


def huge(n: int) -> str:
    return "\u00e9x" * (n // 2)


scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats() | st.text(st.characters(codec="utf-8"), max_size=40)
           | st.integers(1000, 300_000).map(huge) | st.sampled_from(["", "\x00", "\ud7ff\ufffd", "NaN"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


@st.composite
def mutated_message(draw: st.DrawFn) -> str:
    """A documented example of a message with one to three of its fields made wrong."""
    message = dict(BASES[draw(st.sampled_from(sorted(BASES)))])
    for _ in range(draw(st.integers(1, 3))):
        fields = sorted(message) or ["type"]
        how = draw(st.sampled_from(["set", "drop", "extra", "type", "nest"]))
        if how == "set":
            message[draw(st.sampled_from(fields))] = draw(values)
        elif how == "drop":
            message.pop(draw(st.sampled_from(fields)), None)
        elif how == "extra":
            message[draw(st.text(min_size=1, max_size=12))] = draw(values)
        elif how == "type":
            message["type"] = draw(st.sampled_from(CLIENT_MESSAGE_TYPES) | values)
        else:
            depth = draw(st.integers(30, 3000))
            message[draw(st.sampled_from(fields))] = "@" * depth  # replaced by brackets below
    text = json.dumps(message)
    return re.sub(r'"(@+)"', lambda m: "[" * len(m.group(1)) + "]" * len(m.group(1)), text)


@st.composite
def bad_offer(draw: st.DrawFn) -> str:
    """Chromium's offer with lines deleted, duplicated, cut short or changed."""
    lines = CHROMIUM_OFFER.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["delete", "duplicate", "cut", "value", "garbage", "number"]))
        if how == "delete":
            del lines[i]
        elif how == "duplicate":
            lines.insert(i, lines[i])
        elif how == "cut":
            lines[i] = lines[i][:draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        elif how == "value":
            lines[i] = lines[i].split(":", 1)[0] + ":" + draw(st.text(max_size=30))
        elif how == "garbage":
            lines.insert(i, draw(st.text(max_size=60)))
        else:
            lines[i] = re.sub(r"\d+", str(draw(st.sampled_from([-1, 0, 128, 256, 65536, 10**12]))),
                              lines[i], count=1)
        if not lines:
            lines = ["v=0"]
    message: dict[str, Any] = {"type": "offer", "sdp": "\r\n".join(lines) + "\r\n"}
    if draw(st.booleans()):
        message["sources"] = draw(st.dictionaries(st.text(max_size=3), st.sampled_from(
            ["camera", "screen", "staff_screen"]), max_size=3))
    return json.dumps(message)


@st.composite
def bad_candidate(draw: st.DrawFn) -> str:
    words = draw(st.sampled_from(CHROMIUM_CANDIDATES)).split()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(words) - 1))
        words[i] = draw(st.sampled_from(["", "-1", "99999999999", "tcp", "x.local", "::1", "typ", "\u0663"])
                        | st.text(max_size=12))
    candidate = draw(st.sampled_from([" ".join(words), "candidate:" + "x" * 1100, None, ""]))
    return json.dumps({"type": "ice", "candidate": candidate,
                       "sdpMid": draw(st.sampled_from([None, "0", "9"])),
                       "sdpMLineIndex": draw(st.sampled_from([None, 0, 1, 7]))})


# A frame: what kind it is, and its payload (text, or bytes for binary and invalid UTF-8 text frames).
Frame = tuple[str, str | bytes]
frames = st.one_of(
    mutated_message().map(lambda t: ("text", t)),
    bad_offer().map(lambda t: ("text", t)),
    bad_candidate().map(lambda t: ("text", t)),
    st.text(st.characters(codec="utf-8"), max_size=200).map(lambda t: ("text", t)),
    st.integers(33, 100_000).map(lambda n: ("text", "[" * n + "]" * n)),
    st.integers(33, 100_000).map(lambda n: ("text", '{"type": "chat", "text": ' + "{" * n)),
    st.binary(max_size=64).map(lambda b: ("binary", b)),
    st.binary(min_size=1, max_size=64).map(lambda b: ("bad-utf8", b"\xff" + b)),
    st.sampled_from([256 * 1024 + 1, 2 * 1024 * 1024]).map(lambda n: ("text", "x" * n)),
)


@pytest.fixture
def fuzz_counts() -> Iterator[collections.Counter[str]]:
    counts: collections.Counter[str] = collections.Counter()
    yield counts
    print("\nfuzz replies by error code (and other reply types):")
    for key, count in sorted(counts.items()):
        print(f"  {key:28} {count}")


def test_hostile_frames_get_documented_errors_and_the_socket_stays_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fuzz_counts: collections.Counter[str]
) -> None:
    # A plain test with its own loop: hypothesis drives each example through run_until_complete.
    loop = asyncio.new_event_loop()
    run = loop.run_until_complete

    async def start() -> TestClient:
        app = create_app(Settings(data_dir=tmp_path / "data", ice_addresses=("127.0.0.1",)), Clock())
        started = TestClient(TestServer(app, host="127.0.0.1"))
        await started.start_server()
        return started

    client = run(start())
    app = client.app
    caplog.set_level(logging.INFO)
    sockets: dict[str, FakeParticipant] = {}
    codes = {c.value for c in ErrorCode}

    async def open_session() -> None:
        key = new_api_key()
        await app[AppContext.KEY].store.create_api_key(new_id("key"), "fuzz", digest(key))
        response = await client.post("/api/v1/sessions", json={"ticket_id": "FUZZ-1", "tier": 2},
                                     headers={"Authorization": f"Bearer {key}"})
        session = await response.json()
        for role in ("agent", "customer"):
            sockets[role] = FakeParticipant(client, token_of(session[f"{role}_url"]))
            await sockets[role].join()

    async def exchange(role: str, frame: Frame) -> list[dict[str, Any]]:
        participant = sockets[role]
        ws = participant.ws
        assert ws is not None and not ws.closed
        while not participant.inbox.empty():  # broadcasts from the other socket's messages
            participant.inbox.get_nowait()
        kind, payload = frame
        if kind == "binary":
            await ws.send_bytes(bytes(payload))  # type: ignore[arg-type]
        elif kind == "bad-utf8":
            await ws._writer.send_frame(bytes(payload), WSMsgType.TEXT)  # type: ignore[arg-type]
        else:
            await ws.send_str(str(payload))
        await ws.send_str(SENTINEL)
        replies = []
        async with asyncio.timeout(20):
            while True:
                reply = await participant.inbox.get()
                if reply.get("type") == "error" and "'sentinel'" in reply.get("message", ""):
                    return replies
                replies.append(reply)

    run(open_session())

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(role=st.sampled_from(["agent", "customer"]), frame=frames)
    @example(role="agent", frame=("text", "y" * (16 * 1024 * 1024)))
    @example(role="customer", frame=("text", json.dumps({"type": "offer", "sdp": without(
        CHROMIUM_OFFER, "a=fingerprint")})))
    @example(role="agent", frame=("text", json.dumps(BASES["offer"])))
    def hostile(role: str, frame: Frame) -> None:
        if frame[0] == "text":
            # A valid `end` would end the session for everyone: not hostile, and not wanted here.
            with contextlib.suppress(ProtocolError):
                assume(not isinstance(parse_client_message(str(frame[1])), EndSession))
        seen = len(caplog.records)
        replies = run(exchange(role, frame))
        if '"offer"' in str(frame[1])[:40]:  # peers leave background tasks; collecting costs ~0.1 s
            gc.collect()  # a failed background task is logged when collected: blame it on this frame
            run(asyncio.sleep(0))
        bad = [r for r in caplog.records[seen:] if r.exc_info or r.levelno >= logging.ERROR]
        assert not bad, [r.getMessage() for r in bad]
        for reply in replies:
            assert reply.get("type") in SERVER_MESSAGE_TYPES, reply
            if reply["type"] == "error":
                assert reply["code"] in codes and reply["code"] != "internal_error", (frame, reply)
                fuzz_counts[reply["code"]] += 1
            else:
                fuzz_counts[f"({reply['type']})"] += 1
        fuzz_counts["[frames sent]"] += 1

    async def still_served(participant: FakeParticipant, text: str) -> None:
        await participant.send({"type": "chat", "text": text})
        async with asyncio.timeout(10):
            while True:
                message = await participant.inbox.get()
                if message["type"] == "chat" and message["message"]["text"] == text:
                    return
                # A fuzzed offer that was answered but never connected fails later, as documented;
                # which examples run (and so whether one is late) shifts with the protocol's messages.
                assert message["type"] != "error" or (message["code"], message.get("ref")) == (
                    "media_failed", "offer"), message

    try:
        hostile()
        for role, participant in sockets.items():  # still open, still served
            run(still_served(participant, f"{role} still here"))
    finally:
        for participant in sockets.values():
            run(participant.close())
        run(client.close())
        gc.collect()  # "Task exception was never retrieved" is logged when a task is collected
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    assert fuzz_counts["invalid_message"] > 100 and fuzz_counts["media_failed"] > 10, fuzz_counts
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]
    assert "Traceback" not in caplog.text
