"""Latency benchmark in real headless Chromium: a phone customer with a fake camera, an agent console.

For each round: a fresh session; the agent's console is open and connected first; the customer taps
Join. Measured on the browsers' shared clock:
  join->first frame   the customer's Join tap to the first frame painted in the agent's <video>
  snapshot->stored    the agent's Snapshot click to the server's "snapshot.stored" answer
                      (the frame captured, annotated, both PNGs and the JSON on disk, the row committed)
  snapshot->visible   the click to the thumbnail decoded in the console's snapshot list
  read->shown         "Read label" clicked to what was read shown on the console (servers that have it)
  snapshot->chips     the Snapshot click to its chips (what was read off it) in the snapshot list

With --baseline REV the same rounds run, alternating, against a second server built from that git
revision (a temporary worktree), and the table shows both side by side with the ratio: these machines
are noisy, so only a comparison within one run means much.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from playwright.async_api import Browser, Playwright, async_playwright, expect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import launch_options, write_marker_y4m  # noqa: E402
from tests.utils import free_port, wait_until_healthy  # noqa: E402

MARK_JOIN = """
const now = () => performance.timeOrigin + performance.now();
window.__marks = {};
document.addEventListener("pointerdown", (e) => {
  if (e.target.closest('[data-testid="join"]')) window.__joinAt = now();
}, true);
// Where the time goes: the customer's offer, the server's answer, the connection established.
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = function (...args) {
  const pc = new Native(...args);
  window.__marks.peers = (window.__marks.peers ?? 0) + 1;
  const setLocal = pc.setLocalDescription.bind(pc);
  const setRemote = pc.setRemoteDescription.bind(pc);
  pc.setLocalDescription = async (d) => {
    const r = await setLocal(d);
    window.__marks.offer ??= now();
    return r;
  };
  pc.setRemoteDescription = async (d) => { window.__marks.answer ??= now(); return setRemote(d); };
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "connected") window.__marks.connected ??= now();
  });
  return pc;
};
window.RTCPeerConnection.prototype = Native.prototype;
const gum = MediaDevices.prototype.getUserMedia;
MediaDevices.prototype.getUserMedia = async function (...args) {
  const stream = await gum.apply(this, args);
  window.__marks.camera ??= now();
  return stream;
};
const NativeSocket = window.WebSocket;
window.WebSocket = function (...args) {
  const ws = new NativeSocket(...args);
  ws.addEventListener("message", () => { window.__marks.welcome ??= now(); });
  return ws;
};
window.WebSocket.prototype = NativeSocket.prototype;
Object.assign(window.WebSocket, { OPEN: 1, CLOSED: 3, CONNECTING: 0, CLOSING: 2 });
"""
WATCH_FIRST_FRAME = """
(() => new Promise((resolve) => {
  const v = document.querySelector('[data-testid="remote-video"]');
  v.requestVideoFrameCallback(() => resolve(performance.timeOrigin + performance.now()));
}))()
"""


@contextlib.asynccontextmanager
async def server(tree: Path, data_dir: Path, extra: tuple[str, ...] = ()) -> AsyncIterator[tuple[str, str]]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    create = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "visassist", "api-key", "create", "--name", "bench", "--data-dir",
        str(data_dir), env=env, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    key = (await create.communicate())[0].decode().strip()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "visassist", "serve", "--port", str(port), "--data-dir", str(data_dir),
        "--ice-address", "127.0.0.1", "--log-level", "WARNING", *extra, env=env, cwd=tree,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_healthy(base)
        yield base, key
    finally:
        process.terminate()
        await process.wait()


async def one_round(playwright: Playwright, browser: Browser, base: str, key: str) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as api, \
            api.post(f"{base}/api/v1/sessions", json={"ticket_id": "BENCH-1", "tier": 2}) as r:
        session = await r.json()
    desktop = await browser.new_context(viewport={"width": 1280, "height": 800})
    phone = await browser.new_context(**playwright.devices["Pixel 7"])
    try:
        agent = await desktop.new_page()
        await agent.goto(session["agent_url"])
        await expect(agent.get_by_test_id("connection-state")).to_contain_text("Waiting for the customer")
        first_frame = asyncio.ensure_future(agent.evaluate(WATCH_FIRST_FRAME))
        customer = await phone.new_page()
        await customer.add_init_script(MARK_JOIN)
        await customer.goto(session["customer_url"])
        await customer.get_by_test_id("join").tap()
        framed_at = await asyncio.wait_for(first_frame, 30)
        joined_at = await customer.evaluate("window.__joinAt")
        marks = await customer.evaluate("window.__marks")
        if marks.get("peers", 1) != 1:
            print(f"customer built {marks['peers']} peer connections", file=sys.stderr)

        await expect(agent.get_by_test_id("snapshot")).to_be_enabled()
        timing = await agent.evaluate("""() => new Promise((resolve) => {
          const list = document.querySelector('[data-testid="snapshot-list"]');
          const clicked = performance.now();
          let stored = null;
          const notice = document.getElementById("notice");
          new MutationObserver(() => {
            if (stored === null && /saved/.test(notice.textContent)) stored = performance.now();
          }).observe(notice, {childList: true, characterData: true, subtree: true});
          new MutationObserver(() => {
            const img = list.querySelector("img");
            if (!img) return;
            img.decode().then(() => resolve({stored: stored ?? performance.now(), clicked,
                                              visible: performance.now()}));
          }).observe(list, {childList: true});
          document.querySelector('[data-testid="snapshot"]').click();
        })""")
        reading = {}
        if await agent.get_by_test_id("read-label").is_visible():
            await expect(agent.get_by_test_id("snapshot-list").get_by_test_id("chip").first).to_be_visible(
                timeout=30_000)
            chips_at = await agent.evaluate("performance.now()")
            reading = await agent.evaluate("""() => new Promise((resolve) => {
              const result = document.querySelector('[data-testid="read-result"]');
              const clicked = performance.now();
              new MutationObserver(() => {
                const shown = performance.now();
                if (/^(Found|Text|No text)/.test(result.textContent)) resolve({shown, clicked});
              }).observe(result, {childList: true, characterData: true, subtree: true});
              document.querySelector('[data-testid="read-label"]').click();
            })""")
            reading = {"read->shown": reading["shown"] - reading["clicked"],
                       "snapshot->chips": chips_at - timing["clicked"]}
        width, height = await agent.evaluate(
            "(() => { const v = document.querySelector('video'); return [v.videoWidth, v.videoHeight]; })()")
        return {
            "video width": width, "video height": height,
            "join->first frame": framed_at - joined_at,
            "  join->welcome": marks["welcome"] - joined_at,
            "  join->camera": marks["camera"] - joined_at,
            "  both->offer sent": marks["offer"] - max(marks["camera"], marks["welcome"]),
            "  offer->answer": marks["answer"] - marks["offer"],
            "  answer->connected": marks["connected"] - marks["answer"],
            "  connected->frame": framed_at - marks["connected"],
            "snapshot->stored": timing["stored"] - timing["clicked"],
            "snapshot->visible": timing["visible"] - timing["clicked"],
            **reading,
        }
    finally:
        await desktop.close()
        await phone.close()


def worktree(rev: str, into: Path) -> Path:  # before the event loop's work starts
    path = into / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True)
    return path


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="rounds per server (default 7)")
    parser.add_argument("--baseline", metavar="REV", help="also measure this git revision, side by side")
    parser.add_argument("--camera", default="640x480", metavar="WxH", help="the fake camera's size")
    parser.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                        help="an option for this tree's `visassist serve` (--serve-arg=--no-blur-faces)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="visassist-bench-") as tmp:
        scratch = Path(tmp)
        width, height = (int(n) for n in args.camera.split("x"))
        camera = write_marker_y4m(scratch / "marker.y4m", width, height)
        trees = {"current": ROOT}
        if args.baseline:
            trees[f"baseline {args.baseline}"] = worktree(args.baseline, scratch)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        try:
            async with async_playwright() as playwright, contextlib.AsyncExitStack() as stack:
                browser = await playwright.chromium.launch(**launch_options(camera))
                servers = {name: await stack.enter_async_context(
                    server(tree, scratch / name, tuple(args.serve_arg) if tree == ROOT else ()))
                    for name, tree in trees.items()}
                one_round_warmup = next(iter(servers.values()))
                await one_round(playwright, browser, *one_round_warmup)  # warm caches, not counted
                for index in range(args.rounds):
                    for name, (base, key) in servers.items():  # alternate, so drift hits both alike
                        results[name].append(await one_round(playwright, browser, base, key))
                    print(f"round {index + 1}/{args.rounds} done", file=sys.stderr)
                await browser.close()
        finally:
            if args.baseline:
                remove = await asyncio.create_subprocess_exec(
                    "git", "-C", str(ROOT), "worktree", "remove", "--force", str(scratch / "baseline"),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                await remove.wait()

    metrics = list(dict.fromkeys(m for rounds in results.values() for r in rounds for m in r))
    names = list(results)
    print(f"\n{args.rounds} rounds, headless Chromium on loopback, {os.cpu_count()} cores, a {args.camera} "
          "camera; milliseconds, median [min-max]")
    header = f"{'metric':<20}" + "".join(f"{n:>28}" for n in names) + ("   ratio" if len(names) > 1 else "")
    print(header)
    for metric in metrics:
        cells, medians = [], []
        for name in names:
            values = [r[metric] for r in results[name] if metric in r]
            if not values:
                cells.append("-")
                medians.append(0.0)
                continue
            median = statistics.median(values)
            medians.append(median)
            cells.append(f"{median:8.0f} [{min(values):5.0f}-{max(values):5.0f}]")
        ratio = f"   {medians[0] / medians[1]:.2f}x" if len(medians) > 1 and medians[1] else ""
        print(f"{metric:<20}" + "".join(f"{c:>28}" for c in cells) + ratio)


if __name__ == "__main__":
    asyncio.run(main())
