"""TURN with coturn's REST authentication: the credentials each page gets, a real coturn that takes
them (and refuses them once expired), and a call whose media can only go through TURN."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aioice.stun
import pytest
from aiohttp.test_utils import TestClient
from aioice.turn import create_turn_endpoint
from playwright.async_api import Page, Playwright

from tests.browser import frames_in
from tests.coturn import coturn
from tests.netns import Namespace, why_not
from tests.test_network_faults import PHONE, SERVER, call_across, networks  # noqa: F401 (fixture)
from tests.test_restart import create_key, server
from tests.utils import FakeParticipant, free_port, token_of
from visassist.config import Settings
from visassist.media.turn import credential, turn_servers

Create = Callable[..., Awaitable[dict[str, Any]]]
URLS = ("turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp",
        "turns:turn.example.com:443?transport=tcp")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", ice_addresses=("127.0.0.1",), turn_secret="s3cret",
                    turn_urls=URLS, turn_ttl_seconds=600, ice_relay_only=True)


async def test_each_participant_gets_turn_credentials_of_its_own(client: TestClient,
                                                                 create_session: Create) -> None:
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        before = int(time.time())
        welcomes = [await agent.join(), await customer.join()]
        for welcome in welcomes:
            servers = welcome["ice_servers"]
            assert [s["urls"] for s in servers] == list(URLS), "UDP, TCP and TLS on 443, one username"
            expiry, participant = servers[0]["username"].split(":")
            assert participant == welcome["participant"]["id"]
            assert before + 600 <= int(expiry) <= int(time.time()) + 600
            assert {(s["username"], s["credential"]) for s in servers} == {
                (servers[0]["username"], credential("s3cret", servers[0]["username"]))}
            assert welcome["ice_transport_policy"] == "relay"
        assert welcomes[0]["ice_servers"][0]["username"] != welcomes[1]["ice_servers"][0]["username"]
    finally:
        await agent.close()
        await customer.close()


class _Quiet:
    def connection_made(self, transport: Any) -> None: ...
    def datagram_received(self, data: bytes, addr: Any) -> None: ...
    def error_received(self, exc: Exception) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...


async def _allocate(address: str, port: int, username: str, password: str, transport: str) -> tuple[str, int]:
    turn, _ = await create_turn_endpoint(_Quiet, (address, port), username, password, transport=transport)
    try:
        relayed: tuple[str, int] = turn.get_extra_info("sockname")
        return relayed
    finally:
        turn.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_coturn_takes_fresh_credentials_and_refuses_expired_ones(tmp_path: Path,
                                                                       transport: str) -> None:
    """A real coturn with use-auth-secret: what visassist hands out allocates a relay; the same
    participant's credentials a second past their expiry are refused (401), as is a wrong secret."""
    async with coturn(tmp_path, "127.0.0.1", free_port()) as turn:
        (fresh,) = turn_servers(("turn:x",), turn.secret, "par_fresh", 600)
        assert fresh.username and fresh.credential
        relayed = await _allocate(turn.address, turn.port, fresh.username, fresh.credential, transport)
        assert relayed[0] == turn.address and relayed[1] >= 49152

        (stale,) = turn_servers(("turn:x",), turn.secret, "par_stale", 60, now=time.time() - 61)
        assert stale.username and stale.credential
        with pytest.raises(aioice.stun.TransactionFailed) as refused:
            await _allocate(turn.address, turn.port, stale.username, stale.credential, transport)
        assert refused.value.response.attributes["ERROR-CODE"][0] == 401

        (forged,) = turn_servers(("turn:x",), "not-the-secret", "par_forged", 600)
        assert forged.username and forged.credential
        with pytest.raises(aioice.stun.TransactionFailed):
            await _allocate(turn.address, turn.port, forged.username, forged.credential, transport)
    log = turn.log.read_text()
    assert "par_stale" in log, "coturn saw (and refused) the expired username"


# Records every RTCPeerConnection a page makes, to read its configuration and stats (observing only).
KEEP_PEERS = """(() => {
  const Native = window.RTCPeerConnection;
  window.peers = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.peers.push(this); }
  };
})();"""

# The candidate types of the pair the page's newest peer connection is sending on, and its policy.
SELECTED_PAIR = """async () => {
  const pc = window.peers[window.peers.length - 1];
  const stats = [...(await pc.getStats()).values()];
  const byId = new Map(stats.map((s) => [s.id, s]));
  const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
  if (!transport) return null;
  const pair = byId.get(transport.selectedCandidatePairId);
  const local = byId.get(pair.localCandidateId), remote = byId.get(pair.remoteCandidateId);
  return { policy: pc.getConfiguration().iceTransportPolicy, state: pair.state,
           local: local.candidateType, relayProtocol: local.relayProtocol ?? null,
           remote: remote.candidateType, remoteAddress: remote.address ?? remote.ip };
}"""


async def selected_pair(page: Page) -> dict[str, Any]:
    for _ in range(100):
        pair = await page.evaluate(SELECTED_PAIR)
        if pair is not None and pair["state"] == "succeeded":
            return dict(pair)
        await asyncio.sleep(0.1)
    raise AssertionError("no ICE candidate pair was selected")


@pytest.mark.skipif(why_not() is not None, reason=why_not() or "")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_relay_only_call_goes_through_coturn(networks: tuple[Namespace, Namespace],  # noqa: F811
                                                     playwright: Playwright, camera_file: Path,
                                                     tmp_path: Path, transport: str) -> None:
    """The phone's network reaches the server's web port and coturn's port, nothing else: no UDP to
    the server's WebRTC ports (and with `tcp`, no UDP at all, like a strict corporate firewall). With
    `--ice-relay-only` both pages use only TURN relay candidates; the agent still sees the camera."""
    office, phone_net = networks
    data_dir, port, turn_port = tmp_path / "data", free_port(), free_port()
    key = create_key(data_dir)
    async with coturn(tmp_path, SERVER, turn_port, netns=office) as turn, \
            server(data_dir, port, netns=office, args=[
                "--host", "0.0.0.0", "--ice-address", SERVER, "--ice-relay-only",
                "--turn-secret", turn.secret, *(f"--turn-url={u}" for u in turn.urls(transport))]) as base:
        # The phone may open the page and its socket, and talk to coturn; everything else is dropped.
        phone_net.run("iptables", "-A", "OUTPUT", "-o", "lo", "-j", "ACCEPT")
        phone_net.run("iptables", "-A", "OUTPUT", "-p", "tcp", "-d", SERVER, "--dport", str(port),
                      "-j", "ACCEPT")
        phone_net.run("iptables", "-A", "OUTPUT", "-p", transport, "-d", SERVER, "--dport", str(turn_port),
                      "-j", "ACCEPT")
        phone_net.run("iptables", "-A", "OUTPUT", "-j", "DROP")
        async with call_across(networks, playwright, camera_file, tmp_path, base, port, key,
                               init_script=KEEP_PEERS, live_within_ms=20_000) as (agent, customer):
            assert await frames_in(agent, 2) >= 30, "the agent's video flows through TURN"

            pair = await selected_pair(customer)
            assert pair["policy"] == "relay"
            assert (pair["local"], pair["relayProtocol"]) == ("relay", transport)
            assert pair["remote"] == "host" and pair["remoteAddress"] == SERVER, pair
            assert (await selected_pair(agent))["local"] == "relay"
    assert "ALLOCATE processed, success" in turn.log.read_text()
