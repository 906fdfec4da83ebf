"""A real `visassist serve` process, stopped and started again: the record is all still there."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import BrowserContext, Page, expect

from tests.browser import (
    COUNT_FRAMES,
    frames_since,
    get_png,
    join_as_customer,
    new_session,
    open_console,
    record,
    wait_playing,
)
from tests.netns import Namespace
from tests.utils import (
    MARKER_ID,
    FakeParticipant,
    decode_png,
    detect_markers,
    free_port,
    snapshot_from_a_live_camera,
    token_of,
    wait_until_healthy,
)

VISASSIST = str(Path(sys.executable).with_name("visassist"))


@contextlib.asynccontextmanager
async def server(data_dir: Path, port: int, stop: signal.Signals = signal.SIGTERM, *,
                 netns: Namespace | None = None, args: Sequence[str] = ()) -> AsyncIterator[str]:
    """A real `visassist serve` on loopback (inside `netns` when given), stopped with `stop`."""
    command = [VISASSIST, "serve", "--port", str(port), "--data-dir", str(data_dir),
               "--ice-address", "127.0.0.1", *args]
    # The log goes to a file: a pipe nobody reads fills up and stalls a busy server.
    log_path = data_dir.parent / f"serve-{port}.log"
    with open(log_path, "ab") as log:  # noqa: ASYNC230 (opening a local file)
        process = await asyncio.create_subprocess_exec(
            *(netns.enter(command) if netns else command), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        await (netns.wait_until_healthy(base) if netns else wait_until_healthy(base))
        yield base
    finally:
        process.send_signal(stop)
        await asyncio.wait_for(process.wait(), 20)
        output = log_path.read_text()
        # aiohttp's own parser logs malformed requests (schemathesis probes NUL bytes): not ours.
        ours = [block for block in output.split("Traceback")[1:] if "BadHttpMessage" not in block]
        assert not ours, output


def create_key(data_dir: Path) -> str:
    result = subprocess.run([VISASSIST, "api-key", "create", "--name", "restart test", "--data-dir",
                             str(data_dir)], capture_output=True, text=True, check=True)
    assert "shown once" in result.stderr
    return result.stdout.strip()


def without_presence(record: dict[str, Any]) -> dict[str, Any]:
    for session in record["sessions"]:
        for participant in session["participants"]:
            participant.pop("connected")
    return record


async def test_records_and_events_survive_restarts(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    key = create_key(data_dir)
    headers = {"Authorization": f"Bearer {key}"}
    # The phone has its own HTTP client, so its socket outlives the API client's.
    phone = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}")
    async with server(data_dir, port) as base, aiohttp.ClientSession(base_url=base, headers=headers) as api:
        async with api.post("/api/v1/sessions", json={"ticket_id": "ZD-7", "tier": 3}) as response:
            done = await response.json()
        async with api.post("/api/v1/sessions", json={"ticket_id": "ZD-7", "tier": 2}) as response:
            live = await response.json()
        still_here = FakeParticipant(phone, token_of(live["customer_url"]))
        taken = await snapshot_from_a_live_camera(api, done, [
            {"kind": "rect", "color": "#00ff00", "points": [[0.6, 0.1], [0.9, 0.4]]}])
        agent, customer = taken["agent"], taken["customer"]
        await agent.send({"type": "end", "outcome": "resolved", "notes": "before restart"})
        await customer.expect("ended")
        await agent.close()
        await customer.close()
        # This customer is still connected when the server stops.
        await still_here.join()
        async with api.get("/api/v1/tickets/ZD-7") as response:
            before = without_presence(await response.json())
    # Stopped gracefully: told to come straight back, then closed as a restart.
    await still_here.expect("restarting")
    assert await still_here.closed_by_server() == 1012
    await still_here.close()
    await phone.close()

    async with server(data_dir, port, stop=signal.SIGKILL) as base, \
            aiohttp.ClientSession(base_url=base, headers=headers) as api:
        async with api.get("/api/v1/tickets/ZD-7") as response:
            after = without_presence(await response.json())
        live_after = after["sessions"][1]
        assert live_after["events"][-1]["type"] == "participant.left", "the shutdown was recorded"
        live_after["events"].pop()
        assert after == before
        snapshot = after["sessions"][0]["snapshots"][0]
        async with api.get(snapshot["raw_url"]) as response:
            assert MARKER_ID in detect_markers(decode_png(await response.read()))
        # The unfinished session goes on after the restart: its link still works.
        async with api.post(f"/api/v1/sessions/{live['id']}/end", json={"outcome": "abandoned"}) as response:
            assert response.status == 200

    # Killed without warning: what was committed is still there.
    async with server(data_dir, port) as base, aiohttp.ClientSession(base_url=base, headers=headers) as api:
        async with api.get(f"/api/v1/sessions/{live['id']}") as response:
            body = await response.json()
        assert body["status"] == "ended" and body["outcome"]["outcome"] == "abandoned"


# Records what each page's sockets receive (message types, then how they closed), from page start.
SOCKET_LOG = """(() => {
  const Native = window.WebSocket;
  window.socketLog = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => window.socketLog.push(JSON.parse(e.data).type));
      this.addEventListener("close", (e) => window.socketLog.push(`close:${e.code}`));
    }
  };
})();"""


@dataclass
class RestartedCall:
    api: aiohttp.ClientSession
    session: dict[str, Any]
    agent: Page
    customer: Page
    seconds: float  # from the new server listening to the agent's first frame of video


@contextlib.asynccontextmanager
async def call_across_a_restart(tmp_path: Path, phone: BrowserContext, desktop: BrowserContext,
                                stop: signal.Signals) -> AsyncIterator[RestartedCall]:
    """A live call (a phone customer, the agent's console); the server stopped with `stop` mid-call and
    started again on the same data and port. Both pages rejoin on their own, the agent's video flows
    again and the timeline says they rejoined; yields with the new server still up."""
    data_dir, port = tmp_path / "data", free_port()
    key = create_key(data_dir)
    headers = {"Authorization": f"Bearer {key}"}
    for context in (phone, desktop):
        await context.add_init_script(SOCKET_LOG)
    async with server(data_dir, port, stop=stop) as base, aiohttp.ClientSession(
            base_url=base, headers=headers) as api:
        session = await new_session(api)
        agent = await open_console(desktop, session["agent_url"])
        customer = await join_as_customer(phone, session["customer_url"])
        await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
        await wait_playing(agent, "remote-video")
        await agent.evaluate(COUNT_FRAMES, "remote-video")
    # Stopped; the same data and port again.
    async with server(data_dir, port) as base, aiohttp.ClientSession(base_url=base, headers=headers) as api:
        listening = float(await agent.evaluate("performance.now()"))
        started = asyncio.get_running_loop().time()
        while await frames_since(agent, listening) < 30:  # a second of video
            assert asyncio.get_running_loop().time() - started < 30, "the agent's video did not come back"
            await asyncio.sleep(0.1)
        first = min(t for t in await agent.evaluate("window.framesAt") if t > listening)
        seconds = (first - listening) / 1000
        print(f"\n{stop.name}: video flowing again {seconds:.2f} s after the new server listened")
        await expect(customer.get_by_test_id("agent-presence")).to_contain_text("Watching")
        async with api.get(f"/api/v1/sessions/{session['id']}") as response:
            events = (await response.json())["events"]
        joins = [(e["data"]["role"], e["data"]["rejoin"]) for e in events
                 if e["type"] == "participant.joined"]
        assert sorted(joins[2:]) == [("agent", True), ("customer", True)], joins
        yield RestartedCall(api=api, session=session, agent=agent, customer=customer, seconds=seconds)


async def test_a_killed_server_comes_back_and_the_call_goes_on(tmp_path: Path, phone: BrowserContext,
                                                               desktop: BrowserContext) -> None:
    """SIGKILL mid-call: no goodbye to anyone; the pages find the new server with their usual backoff."""
    async with call_across_a_restart(tmp_path, phone, desktop, signal.SIGKILL) as call:
        for page in (call.agent, call.customer):
            assert "restarting" not in await page.evaluate("window.socketLog")


async def test_a_restart_tells_the_pages_to_come_straight_back(tmp_path: Path, phone: BrowserContext,
                                                               desktop: BrowserContext) -> None:
    """SIGTERM mid-call (a deploy): both pages are told, come back at once, and the call goes on: video
    within seconds of the new server listening, and a snapshot of the camera after the restart."""
    async with call_across_a_restart(tmp_path, phone, desktop, signal.SIGTERM) as call:
        for page in (call.agent, call.customer):
            log = await page.evaluate("window.socketLog")
            told = log.index("restarting")
            back = log.index("welcome", told)
            # Told, closed as a restart, then maybe refused while the new server starts, then back.
            assert log[told + 1] == "close:1012", log
            assert set(log[told + 2:back]) <= {"close:1006"}, log
        assert call.seconds < 5, "the pages waited as if the network had failed"
        await call.agent.get_by_test_id("snapshot").click()
        await expect(call.agent.get_by_test_id("snapshot-list").locator("> li")).to_have_count(1)
        async with call.api.get(f"/api/v1/sessions/{call.session['id']}/snapshots") as response:
            (snapshot,) = (await response.json())["snapshots"]
        assert MARKER_ID in detect_markers(await get_png(call.api, snapshot["raw_url"]))
        timeline = (await record(call.api, call.session["id"]))["events"]
        left = [e["data"]["role"] for e in timeline if e["type"] == "participant.left"]
        assert sorted(left) == ["agent", "customer"], "the graceful stop recorded both departures"
        started = [e["data"]["source"] for e in timeline if e["type"] == "media.started"]
        assert started == ["camera", "camera"], "one start per server's stream, whatever its sizes"
