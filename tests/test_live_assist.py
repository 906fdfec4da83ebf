"""The live-assist toolkit in real headless Chromium, each tool proven by what a person would see or
by what lands in the ticket's record."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import numpy as np
from playwright.async_api import BrowserContext, Page, expect

from tests.browser import (
    canvas_pixels,
    drag,
    get_png,
    join_as_customer,
    new_session,
    open_console,
    record,
    wait_playing,
)
from tests.utils import MARKER_ID, detect_markers

# Test instrumentation: keep the page's peer connections where a test can read their stats.
KEEP_PEERS = """
const Native = window.RTCPeerConnection;
window.__peerConnections = [];
window.RTCPeerConnection = function (...args) {
  const pc = new Native(...args);
  window.__peerConnections.push(pc);
  return pc;
};
window.RTCPeerConnection.prototype = Native.prototype;
"""


async def live_pair(api: aiohttp.ClientSession, phone: BrowserContext, desktop: BrowserContext,
                    init_script: str | None = None, **create: Any) -> tuple[dict[str, Any], Page, Page]:
    session = await new_session(api, **create)
    agent = await open_console(desktop, session["agent_url"])
    customer = await join_as_customer(phone, session["customer_url"], init_script)
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
    await wait_playing(agent, "remote-video")
    return session, agent, customer


def red_share(pixels: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> float:
    h, w = pixels.shape[:2]
    box = pixels[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)].astype(int)
    red = (box[..., 2] > 180) & (box[..., 1] < 110) & (box[..., 0] < 110) & (box[..., 3] > 100)
    return float(red.mean()) if red.size else 0.0


async def overlay(customer: Page) -> np.ndarray:
    return canvas_pixels(await customer.get_by_test_id("customer-overlay").evaluate("c => c.toDataURL()"))


async def until_overlay(customer: Page, box: tuple[float, float, float, float], op: str, value: float,
                        seconds: float = 5) -> None:
    """Poll the customer's overlay until the red share in `box` is >= or <= `value`."""
    async with asyncio.timeout(seconds):
        while True:
            share = red_share(await overlay(customer), *box)
            if (share >= value) if op == ">=" else (share <= value):
                return
            await asyncio.sleep(0.05)


async def test_mirrored_annotations_and_laser_pointer(api: aiohttp.ClientSession, phone: BrowserContext,
                                                      desktop: BrowserContext) -> None:
    _, agent, customer = await live_pair(api, phone, desktop)
    await wait_playing(customer, "local-video")

    await drag(agent, "annotation-canvas", (0.6, 0.2), (0.9, 0.5))
    # The customer's overlay shows the agent's arrow over their own preview, where it was drawn.
    await until_overlay(customer, (0.71, 0.29, 0.79, 0.41), ">=", 0.05)
    assert red_share(await overlay(customer), 0.0, 0.6, 0.5, 1.0) == 0

    await agent.get_by_role("button", name="Undo").click()
    await until_overlay(customer, (0.55, 0.15, 0.95, 0.55), "<=", 0)

    # The laser pointer: a dot that follows the agent's pointer and leaves no trace.
    await agent.get_by_test_id("pointer").click()
    box = await agent.get_by_test_id("annotation-canvas").bounding_box()
    assert box is not None
    await agent.mouse.move(box["x"] + 0.25 * box["width"], box["y"] + 0.75 * box["height"])
    await until_overlay(customer, (0.2, 0.7, 0.3, 0.8), ">=", 0.05)
    await agent.mouse.move(box["x"] + 0.75 * box["width"], box["y"] + 0.25 * box["height"])
    await until_overlay(customer, (0.2, 0.7, 0.3, 0.8), "<=", 0)
    assert red_share(await overlay(customer), 0.7, 0.2, 0.8, 0.3) > 0.05
    await agent.mouse.move(box["x"] - 20, box["y"] - 20)  # leaves the picture: the dot goes
    await until_overlay(customer, (0.0, 0.0, 1.0, 1.0), "<=", 0)


async def test_chat_both_ways_is_text_and_in_the_record(api: aiohttp.ClientSession, phone: BrowserContext,
                                                        desktop: BrowserContext) -> None:
    session, agent, customer = await live_pair(api, phone, desktop)
    dialogs: list[str] = []
    customer.on("dialog", lambda d: dialogs.append(d.message))
    evil = "<img src=x onerror=alert(1)>"
    await agent.get_by_test_id("chat-input").fill(evil)
    await agent.get_by_test_id("chat-input").press("Enter")
    await customer.get_by_role("button", name="Chat").tap()
    await expect(customer.get_by_test_id("chat-log")).to_contain_text(evil)
    assert await customer.get_by_test_id("chat-log").locator("img").count() == 0
    await customer.get_by_test_id("chat-input").fill("It's the blue cable")
    await customer.get_by_role("button", name="Send").tap()
    await expect(agent.get_by_test_id("chat-log")).to_contain_text("It's the blue cable")
    await expect(agent.get_by_test_id("chat-input")).to_have_value("")

    # Too long a message is refused, and says so.
    await customer.get_by_test_id("chat-input").evaluate("i => { i.removeAttribute('maxlength'); }")
    await customer.get_by_test_id("chat-input").fill("x" * 2001)
    await customer.get_by_role("button", name="Send").tap()
    await expect(customer.locator("#toast")).to_contain_text("Message not sent")

    chats = [e["data"] for e in (await record(api, session["id"]))["events"] if e["type"] == "chat.message"]
    assert [(c["role"], c["text"]) for c in chats] == [("agent", evil), ("customer", "It's the blue cable")]
    assert dialogs == []
    # The transcript comes back after a reload.
    await customer.reload()
    await customer.get_by_test_id("join").tap()
    await customer.get_by_role("button", name="Chat").tap()
    await expect(customer.get_by_test_id("chat-log").locator("li")).to_have_count(2)


async def test_freeze_holds_the_picture_for_everyone_and_snapshots_use_it(
    api: aiohttp.ClientSession, phone: BrowserContext, desktop: BrowserContext
) -> None:
    session, agent, customer = await live_pair(api, phone, desktop)
    await agent.get_by_test_id("freeze").click()
    await expect(agent.get_by_test_id("freeze")).to_have_attribute("aria-pressed", "true")
    await expect(customer.get_by_text("Paused by your agent")).to_be_visible()
    for page, test_id in ((customer, "frozen-frame"), (agent, "agent-frozen-frame")):
        frozen_img = page.get_by_test_id(test_id)
        await expect(frozen_img).to_be_visible()
        await expect(frozen_img).to_have_js_property("complete", True)
        assert await frozen_img.evaluate("i => i.naturalWidth") > 0
    await expect(agent.get_by_test_id("remote-video")).to_be_hidden()

    snapshots = []
    for _ in range(2):
        await agent.get_by_test_id("snapshot").click()
        await asyncio.sleep(0.6)  # the camera's block moves on meanwhile
    await expect(agent.get_by_test_id("snapshot-list").locator("> li")).to_have_count(2)
    async with api.get(f"/api/v1/sessions/{session['id']}/snapshots") as response:
        snapshots = (await response.json())["snapshots"]
    first, second = [await get_png(api, s["raw_url"]) for s in snapshots]
    assert np.array_equal(first, second), "both snapshots are the frozen frame"
    async with api.get(session["customer_url"] + "/frozen.png") as response:
        from tests.utils import decode_png

        held = decode_png(await response.read())
    assert np.array_equal(first, held), "the snapshot is exactly the frame everyone sees frozen"
    assert MARKER_ID in detect_markers(first)

    await agent.get_by_test_id("freeze").click()
    await expect(customer.get_by_text("Paused by your agent")).to_be_hidden()
    await expect(agent.get_by_test_id("agent-frozen-frame")).to_be_hidden()
    await expect(agent.get_by_test_id("remote-video")).to_be_visible()
    await asyncio.sleep(0.5)
    await agent.get_by_test_id("snapshot").click()
    await expect(agent.get_by_test_id("snapshot-list").locator("> li")).to_have_count(3)
    async with api.get(f"/api/v1/sessions/{session['id']}/snapshots") as response:
        live = (await response.json())["snapshots"][2]
    after = await get_png(api, live["raw_url"])
    assert after.shape != first.shape or not np.array_equal(after, first), "live again after unfreezing"
    types = [e["type"] for e in (await record(api, session["id"]))["events"]]
    assert types.count("media.frozen") == 1 and types.count("media.unfrozen") == 1


NO_SCREEN_SHARING = "Object.defineProperty(MediaDevices.prototype, 'getDisplayMedia', {value: undefined});"


async def test_customer_screen_share_and_source_choice(api: aiohttp.ClientSession, desktop: BrowserContext,
                                                       phone: BrowserContext) -> None:
    session = await new_session(api)
    agent = await open_console(desktop, session["agent_url"])
    # A customer on a desktop browser shares a screen beside the camera.
    laptop = await join_as_customer(desktop, session["customer_url"])
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
    await laptop.get_by_test_id("screen-share").click()
    await expect(laptop.get_by_test_id("screen-share")).to_have_attribute("aria-pressed", "true")
    await expect(agent.get_by_test_id("source-screen")).to_be_enabled(timeout=15_000)
    await agent.get_by_test_id("source-screen").click()
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("screen", timeout=15_000)
    await agent.wait_for_function(
        "() => document.querySelector('[data-testid=remote-video]').videoWidth > 700", timeout=15_000)
    await agent.get_by_test_id("snapshot").click()
    await agent.get_by_test_id("source-camera").click()
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("camera")
    await agent.get_by_test_id("snapshot").click()
    await expect(agent.get_by_test_id("snapshot-list").locator("> li")).to_have_count(2)
    async with api.get(f"/api/v1/sessions/{session['id']}/snapshots") as response:
        screen, cam = (await response.json())["snapshots"]
    assert screen["source"] == "screen" and cam["source"] == "camera"
    assert MARKER_ID in detect_markers(await get_png(api, cam["raw_url"]))
    assert MARKER_ID not in detect_markers(await get_png(api, screen["raw_url"]))
    started = [e["data"]["source"] for e in (await record(api, session["id"]))["events"]
               if e["type"] == "media.started"]
    assert "screen" in started and "camera" in started

    # A phone that cannot share a screen says so instead of showing a broken button.
    other = await new_session(api)
    mobile = await join_as_customer(phone, other["customer_url"], NO_SCREEN_SHARING)
    await expect(mobile.get_by_test_id("screen-share")).to_be_hidden()
    await expect(mobile.get_by_text("Screen sharing isn't available on this device")).to_be_visible()


async def test_agent_shows_their_screen_to_the_customer(api: aiohttp.ClientSession, phone: BrowserContext,
                                                        desktop: BrowserContext) -> None:
    session, agent, customer = await live_pair(api, phone, desktop)
    await agent.get_by_test_id("staff-screen-share").click()
    await expect(agent.get_by_test_id("staff-screen-share")).to_have_attribute("aria-pressed", "true")
    await expect(customer.get_by_test_id("staff-screen")).to_be_visible(timeout=15_000)
    await wait_playing(customer, "staff-screen")
    # The agent's own view of the customer carried on through the renegotiation.
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
    await agent.get_by_test_id("staff-screen-share").click()
    await expect(customer.get_by_test_id("staff-screen")).to_be_hidden(timeout=15_000)
    shared = [e["data"] for e in (await record(api, session["id"]))["events"]
              if e["type"] in ("media.started", "media.stopped") and e["data"]["source"] == "staff_screen"]
    assert len(shared) == 2


async def test_hd_photo_is_full_resolution_and_annotatable(api: aiohttp.ClientSession, phone: BrowserContext,
                                                           desktop: BrowserContext) -> None:
    session, agent, customer = await live_pair(api, phone, desktop)
    # The video is sent at half size; the photo comes from the camera at its own.
    await agent.get_by_test_id("quality-profile").select_option("medium")
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("320×240", timeout=15_000)
    await agent.get_by_test_id("snapshot").click()
    await expect(agent.get_by_test_id("snapshot-list").locator("> li")).to_have_count(1)
    await agent.get_by_test_id("hd-photo").click()
    await expect(customer.locator("#toast")).to_contain_text("Photo sent", timeout=15_000)
    await expect(agent.get_by_test_id("snapshot-list").locator("> li")).to_have_count(2)
    async with api.get(f"/api/v1/sessions/{session['id']}/snapshots") as response:
        frame, photo = (await response.json())["snapshots"]
    assert photo["source"] == "device_photo"
    assert photo["width"] * photo["height"] > frame["width"] * frame["height"]
    assert (photo["width"], photo["height"]) == (640, 480)
    assert MARKER_ID in detect_markers(await get_png(api, photo["raw_url"]))

    # Annotatable like any other: draw on the stored photo and save.
    await agent.locator(f"[data-snapshot-id='{photo['id']}']").get_by_test_id("annotate-snapshot").click()
    await expect(agent.get_by_test_id("photo-view")).to_be_visible()
    await drag(agent, "annotation-canvas", (0.6, 0.2), (0.9, 0.5))
    await agent.get_by_test_id("snapshot").click()
    await expect(agent.get_by_test_id("remote-video")).to_be_visible()
    async with asyncio.timeout(10):
        while True:
            async with api.get(f"/api/v1/sessions/{session['id']}/snapshots") as response:
                drawn = (await response.json())["snapshots"][1]
            if drawn["annotations"]:
                break
            await asyncio.sleep(0.1)
    from tests.utils import red_fraction

    annotated = await get_png(api, drawn["annotated_url"])
    assert red_fraction(annotated, 0.71, 0.29, 0.79, 0.41) > 0.05
    assert red_fraction(await get_png(api, drawn["raw_url"]), 0.55, 0.15, 0.95, 0.55) < 0.001
    types = [e["type"] for e in (await record(api, session["id"]))["events"]]
    assert {"photo.requested", "snapshot.annotated", "quality.changed"} <= set(types)


async def test_photo_upload_rejects_what_is_not_a_photo(api: aiohttp.ClientSession) -> None:
    session = await new_session(api)
    url = session["customer_url"] + "/photos"
    cases = [(b"GIF89a" + b"\0" * 100, 415, "invalid_image"), (b"\xff\xd8\xff" + b"junk" * 10, 415,
                                                                "invalid_image"),
             (b"\x89PNG\r\n\x1a\n" + b"\0" * (16 * 2**20), 413, "payload_too_large")]
    for body, status, code in cases:
        async with api.post(url, data=body, headers={"Content-Type": "image/jpeg"}) as response:
            assert response.status == status
            assert (await response.json())["error"]["code"] == code
    agent_url = session["agent_url"] + "/photos"
    async with api.post(agent_url.replace("/a/", "/s/"), data=b"\xff\xd8\xff") as response:
        assert response.status == 404, "an agent link is not a customer link"
    assert (await record(api, session["id"]))["snapshots"] == []


async def test_remote_camera_control(playwright: Any, api: aiohttp.ClientSession,
                                     desktop: BrowserContext) -> None:
    from tests.browser import launch_options
    from tests.utils import FakeParticipant, token_of

    session = await new_session(api)
    browser = await playwright.chromium.launch(**launch_options(None, cameras=2))
    try:
        phone = await browser.new_context(**playwright.devices["Pixel 7"])
        agent = await open_console(desktop, session["agent_url"])
        customer = await join_as_customer(phone, session["customer_url"])
        await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
        # The console shows what the device supports and disables the rest, saying why.
        await expect(agent.get_by_test_id("camera-switch")).to_be_enabled()
        await expect(agent.get_by_test_id("torch")).to_be_disabled()
        await expect(agent.get_by_test_id("zoom")).to_be_disabled()
        await expect(agent.get_by_test_id("camera-note")).to_have_text("This device has no torch, no zoom.")

        label = ("() => document.querySelector('[data-testid=local-video]')"
                 ".srcObject.getVideoTracks()[0].label")
        before = await customer.evaluate(label)
        await agent.get_by_test_id("camera-switch").click()
        await customer.wait_for_function(
            "(before) => document.querySelector('[data-testid=local-video]').srcObject"
            ".getVideoTracks()[0].label !== before", arg=before, timeout=15_000)
        await expect(customer.locator("#toast")).to_contain_text("switched your camera")
        # The agent's picture carries on from the other camera, without renegotiating.
        assert await agent.evaluate(
            "() => { const v = document.querySelector('[data-testid=remote-video]');"
            " const t = v.currentTime;"
            " return new Promise(r => setTimeout(() => r(v.currentTime > t), 1000)); }")

        # A request the device cannot do fails with the device's reason, shown to the agent.
        async with api.post(f"/api/v1/sessions/{session['id']}/participants",
                            json={"role": "expert"}) as response:
            expert_url = (await response.json())["url"]
        expert = FakeParticipant(api, token_of(expert_url))
        try:
            await expert.join()
            await expert.send({"type": "camera", "torch": True})
            await expect(agent.get_by_test_id("camera-note")).to_contain_text(
                "The phone said: this camera has no torch")
        finally:
            await expert.close()
    finally:
        await browser.close()
    events = (await record(api, session["id"]))["events"]
    changes = [e["data"] for e in events if e["type"] == "camera.changed"]
    assert changes == [{"facing": "user"}, {"torch": True}]


AUDIO_LEVEL = """async (testid) => {
  const el = document.querySelector(`[data-testid=${testid}]`) || document.getElementById(testid);
  const stream = el.srcObject;
  if (!stream || !stream.getAudioTracks().length) return 0;
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  let peak = 0;
  const end = performance.now() + 2500;
  while (performance.now() < end) {
    analyser.getFloatTimeDomainData(data);
    for (const v of data) peak = Math.max(peak, Math.abs(v));
    await new Promise((r) => setTimeout(r, 20));
  }
  await ctx.close();
  return peak;
}"""


async def test_voice_both_ways_with_mute(api: aiohttp.ClientSession, phone: BrowserContext,
                                         desktop: BrowserContext) -> None:
    session, agent, customer = await live_pair(api, phone, desktop)
    # Many customers are already on the phone: the microphone is off unless turned on.
    await expect(customer.get_by_test_id("mute")).to_have_text("Turn microphone on")
    assert await agent.evaluate(AUDIO_LEVEL, "remote-audio") < 0.01, "nothing heard from a muted customer"

    await customer.get_by_test_id("mute").tap()
    await expect(customer.get_by_test_id("mute")).to_have_attribute("aria-pressed", "true")
    await expect(agent.locator("#participants")).to_contain_text("Ana (customer) · 🎙")
    assert await agent.evaluate(AUDIO_LEVEL, "remote-audio") > 0.05, "the agent hears the customer"

    await agent.get_by_test_id("mute").click()
    await expect(agent.get_by_test_id("mute")).to_have_text("Mute")
    # The customer's page plays voices once presence says someone is unmuted.
    await customer.wait_for_function("() => document.getElementById('remote-audio').srcObject !== null")
    assert await customer.evaluate(AUDIO_LEVEL, "remote-audio") > 0.05, "the customer hears the agent"

    await customer.get_by_test_id("mute").tap()
    await expect(customer.get_by_test_id("mute")).to_have_attribute("aria-pressed", "false")
    await asyncio.sleep(0.5)
    assert await agent.evaluate(AUDIO_LEVEL, "remote-audio") < 0.01, "muted again: silence"
    changes = [(e["data"]["role"], e["data"]["muted"]) for e in (await record(api, session["id"]))["events"]
               if e["type"] == "audio.changed"]
    assert changes == [("customer", False), ("agent", False), ("customer", True)]

    # A session created with audio asks for the microphone from the start.
    other = await new_session(api, audio=True)
    talking = await join_as_customer(phone, other["customer_url"])
    await expect(talking.get_by_test_id("mute")).to_have_attribute("aria-pressed", "true", timeout=15_000)


async def test_tier3_escalation_fans_out_and_hands_over(api: aiohttp.ClientSession, phone: BrowserContext,
                                                        desktop: BrowserContext) -> None:
    session, agent, customer = await live_pair(api, phone, desktop, init_script=KEEP_PEERS)
    await agent.get_by_test_id("invite-expert").click()
    await expect(agent.get_by_test_id("invite-link")).to_have_value(__import__("re").compile("/a/"))
    expert_url = await agent.get_by_test_id("invite-link").input_value()
    expert = await open_console(desktop, expert_url)
    await expect(expert.get_by_test_id("my-role")).to_have_text("Expert")
    await wait_playing(expert, "remote-video")

    async with api.post(f"/api/v1/sessions/{session['id']}/participants",
                        json={"role": "supervisor", "name": "Lee"}) as response:
        assert response.status == 201
        supervisor_url = (await response.json())["url"]
    supervisor = await open_console(desktop, supervisor_url)
    await wait_playing(supervisor, "remote-video")
    await expect(supervisor.get_by_test_id("snapshot")).to_be_hidden()
    await expect(supervisor.get_by_test_id("chat-input")).to_be_hidden()

    # Three viewers, one upload: the phone sends a single video stream.
    sent = await customer.evaluate("""async () => {
      let streams = 0;
      for (const pc of window.__peerConnections) {
        if (pc.connectionState === "closed") continue;
        (await pc.getStats()).forEach((s) => {
          if (s.type === "outbound-rtp" && s.kind === "video" && s.bytesSent > 0) streams += 1;
        });
      }
      return streams;
    }""")
    assert sent == 1
    await expect(expert.locator("#participants")).to_contain_text("Lee (supervisor)")

    # The expert draws and takes a snapshot; the customer sees the drawing.
    await drag(expert, "annotation-canvas", (0.6, 0.2), (0.9, 0.5))
    await expert.get_by_test_id("snapshot").click()
    await expect(expert.get_by_test_id("snapshot-list").locator("> li")).to_have_count(1)
    await expect(agent.get_by_test_id("snapshot-list").locator("> li")).to_have_count(1)
    await expert.get_by_test_id("chat-input").fill("Tier 3 here")
    await expert.get_by_test_id("chat-input").press("Enter")
    await customer.get_by_role("button", name="Chat").tap()
    await expect(customer.get_by_test_id("chat-log")).to_contain_text("Tier 3 here")

    # The Tier 2 agent hands over and leaves; the expert carries on and ends the session.
    await agent.get_by_test_id("handover").click()
    await expect(expert.locator("#lead-note")).to_have_text("You are leading this session.")
    await agent.get_by_role("button", name="Leave session").click()
    await expect(expert.locator("#participants li[data-connected=false]")).to_contain_text("agent")
    await expect(expert.get_by_test_id("connection-state")).to_contain_text("Live")
    await expert.get_by_test_id("outcome").select_option("resolved")
    await expert.get_by_test_id("end-session").click()
    await expect(customer.get_by_role("heading", name="The session has ended")).to_be_visible()

    events = (await record(api, session["id"]))["events"]
    invited = [e["data"]["role"] for e in events if e["type"] == "participant.invited"]
    joined = [e["data"]["role"] for e in events if e["type"] == "participant.joined"]
    handover = [e for e in events if e["type"] == "session.handover"]
    left = [e["data"]["role"] for e in events if e["type"] == "participant.left"]
    assert invited == ["expert", "supervisor"]
    assert joined == ["agent", "customer", "expert", "supervisor"]
    assert len(handover) == 1 and handover[0]["data"]["role"] == "expert"
    assert left[0] == "agent"
    ended = next(e for e in events if e["type"] == "session.ended")
    assert ended["actor"] == handover[0]["data"]["to"]


async def test_call_quality_shown_live_and_the_agent_can_step_down(
    api: aiohttp.ClientSession, phone: BrowserContext, desktop: BrowserContext
) -> None:
    import re

    session, agent, customer = await live_pair(api, phone, desktop)
    # Resolution, frame rate, bitrate, loss and round-trip time, measured by the phone, updated live.
    await expect(agent.get_by_test_id("quality")).to_have_text(
        re.compile(r"^\d+×\d+ · \d+ fps · [\d.]+ [kM]bps · [\d.]+% loss · \d+ ms RTT$"), timeout=15_000)
    await expect(agent.get_by_test_id("quality-warning")).to_have_text("")

    await agent.get_by_test_id("quality-profile").select_option("low")
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("160×120", timeout=15_000)
    await expect(agent.get_by_test_id("quality")).to_contain_text("160×120", timeout=15_000)

    await agent.get_by_test_id("quality-profile").select_option("audio_only")
    await expect(customer.locator("#toast")).to_contain_text("Video paused")
    await expect(agent.get_by_test_id("quality")).to_contain_text("video paused", timeout=15_000)

    # Back up: full size again (the browser's bandwidth estimate ramps up over a few seconds).
    await agent.get_by_test_id("quality-profile").select_option("high")
    await expect(agent.get_by_test_id("connection-state")).to_contain_text(
        re.compile(r"camera ([3-9]\d\d|\d{4,})×"), timeout=20_000)
    profiles = [e["data"]["profile"] for e in (await record(api, session["id"]))["events"]
                if e["type"] == "quality.changed"]
    assert profiles == ["low", "audio_only", "high"]


async def test_poor_connection_is_warned_in_plain_words(api: aiohttp.ClientSession,
                                                       desktop: BrowserContext) -> None:
    from tests.utils import FakeParticipant, token_of

    session = await new_session(api)
    agent = await open_console(desktop, session["agent_url"])
    phone = FakeParticipant(api, token_of(session["customer_url"]))
    try:
        await phone.join()
        await phone.send({"type": "quality", "width": 320, "height": 180, "fps": 6, "bitrate_kbps": 90,
                          "packet_loss": 0.12, "rtt_ms": 750, "profile": "high"})
        warning = agent.get_by_test_id("quality-warning")
        await expect(warning).to_contain_text("Poor connection: 12% of the video is lost on the way")
        await expect(warning).to_contain_text("the connection is slow (750 ms round trip)")
        await expect(warning).to_contain_text("choppy (6 frames a second)")
        await phone.send({"type": "quality", "width": 640, "height": 480, "fps": 30, "bitrate_kbps": 900,
                          "packet_loss": 0.0, "rtt_ms": 20, "profile": "high"})
        await expect(warning).to_have_text("")
    finally:
        await phone.close()


NO_CAMERA = """
MediaDevices.prototype.getUserMedia = async function () {
  throw new DOMException("Requested device not found", "NotFoundError");
};
"""


async def test_screen_instead_of_a_missing_camera(api: aiohttp.ClientSession,
                                                  desktop: BrowserContext) -> None:
    session = await new_session(api)
    agent = await open_console(desktop, session["agent_url"])
    laptop = await join_as_customer(desktop, session["customer_url"], NO_CAMERA)
    await expect(laptop.get_by_role("alert")).to_contain_text("No camera found")
    await laptop.get_by_test_id("screen-instead").click()
    await expect(agent.get_by_test_id("source-screen")).to_be_enabled(timeout=15_000)
    await agent.get_by_test_id("source-screen").click()
    await wait_playing(agent, "remote-video")
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live · screen")
