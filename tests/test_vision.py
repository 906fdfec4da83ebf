"""Reading labels and blurring faces with the real models, on pictures whose content the tests know."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import skimage.data
import zxingcpp
from aiohttp.test_utils import TestClient

from tests.test_webhooks import Receiver, register
from tests.utils import (
    SERIAL,
    FakeParticipant,
    MarkerTrack,
    decode_png,
    detect_markers,
    free_port,
    marker_image,
    start_app,
    token_of,
)
from visassist.config import Settings
from visassist.vision.codes import read_codes
from visassist.vision.faces import FaceBlur
from visassist.vision.ocr import TextReader
from visassist.vision.patterns import DEFAULT_PATTERNS, FieldPattern, find_fields, parse_field_pattern
from visassist.vision.pool import Busy, TimedOut, VisionPool
from visassist.vision.reading import read_picture

ClientFactory = Callable[..., Awaitable[TestClient]]
ROOT = Path(__file__).resolve().parent.parent
EAN = "4006381333931"
QR = "https://example.com/support/VX-2231-A"


def code_image(text: str, fmt: zxingcpp.BarcodeFormat, scale: int) -> np.ndarray:
    image = np.asarray(zxingcpp.create_barcode(text, fmt).to_image(scale=scale))
    return cv2.cvtColor(np.pad(image, 8, constant_values=255), cv2.COLOR_GRAY2BGR)


def label(width: int = 1280, height: int = 720) -> np.ndarray:
    """A device label: model, serial number, MAC address, an EAN-13 barcode and a QR code."""
    image = np.full((height, width, 3), 140, np.uint8)
    cv2.rectangle(image, (40, 40), (width - 40, height - 40), (255, 255, 255), -1)
    for row, text in enumerate(("MODEL XR-500", f"S/N {SERIAL}", "MAC 00:1A:2B:3C:4D:5E")):
        cv2.putText(image, text, (70, 120 + row * 70), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (0, 0, 0), 3,
                    cv2.LINE_AA)
    ean = code_image(EAN, zxingcpp.BarcodeFormat.EAN13, 3)
    image[400:400 + ean.shape[0], 70:70 + ean.shape[1]] = ean
    qr = code_image(QR, zxingcpp.BarcodeFormat.QRCode, 6)
    image[380:380 + qr.shape[0], 560:560 + qr.shape[1]] = qr
    return image


def astronaut() -> np.ndarray:
    """A real face photograph (scikit-image's data: NASA's portrait of Eileen Collins, public domain)."""
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def with_face(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """`image` with the photograph pasted into its right half; returns where."""
    photo = cv2.resize(astronaut(), (320, 320))
    height, width = image.shape[:2]
    x0, y0 = width - 340, height - 340
    out = image.copy()
    out[y0:y0 + 320, x0:x0 + 320] = photo
    return out, (x0, y0, x0 + 320, y0 + 320)


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader()


def test_a_label_is_read_exactly(reader: TextReader) -> None:
    reading = read_picture(label(), reader, DEFAULT_PATTERNS)
    found = {(f.name, f.value) for f in reading.found}
    assert found == {("model", "XR-500"), ("serial_number", SERIAL), ("mac_address", "00:1A:2B:3C:4D:5E"),
                     ("ean", EAN), ("qr", QR)}
    serial = next(f for f in reading.found if f.name == "serial_number")
    assert serial.confidence > 0.9
    x0, y0, x1, y1 = serial.box  # where the line is: the second line of text, on the left
    assert x0 < 0.1 and 0.2 < y0 < 0.3 and 0.2 < x1 < 0.5 and y1 < 0.35


def test_codes_are_read_in_a_small_frame_too() -> None:
    small = cv2.resize(label(), (640, 360), interpolation=cv2.INTER_AREA)  # EAN bars ~1.5 px wide
    assert sorted(c.text for c in read_codes(small)) == [EAN, QR]


def test_a_region_reads_only_what_is_in_it(reader: TextReader) -> None:
    reading = read_picture(label(), reader, DEFAULT_PATTERNS, region=(0.0, 0.2, 0.5, 0.32))
    assert [(f.name, f.value) for f in reading.found] == [("serial_number", SERIAL)]
    assert reading.found[0].box[1] >= 0.2 and reading.found[0].box[3] <= 0.33  # in the whole picture's terms


def test_the_camera_clip_carries_the_serial_number(reader: TextReader) -> None:
    for width, height in ((640, 480), (1280, 720)):
        reading = read_picture(marker_image(width, height), reader, DEFAULT_PATTERNS)
        assert [(f.name, f.value) for f in reading.found] == [("serial_number", SERIAL)]


def test_field_patterns() -> None:
    lines = ["Serial No.: AB12345", "SNOWFLAKE 1234", "IMEI 490154203237518", "IMEI 490154203237519",
             "mac 00-1a-2b-3c-4d-5e", "Model: XR-500"]
    assert [(m.name, m.value) for m in find_fields(lines, DEFAULT_PATTERNS)] == [
        ("serial_number", "AB12345"), ("imei", "490154203237518"), ("mac_address", "00-1A-2B-3C-4D-5E"),
        ("model", "XR-500")]  # the second IMEI fails its Luhn check digit
    custom = replace(Settings(), field_patterns=(parse_field_pattern(r"model=\bPN[:\s]+([A-Z0-9-]+)"),
                                                 parse_field_pattern(r"firmware=\bFW\s*V?([0-9.]+)")))
    names = [p.name for p in custom.patterns]
    assert names == ["serial_number", "model", "mac_address", "imei", "firmware"]
    lines = ["PN: 77-1", "FW v2.4.1", "Model X1"]
    assert [(m.name, m.value) for m in find_fields(lines, custom.patterns)] == [
        ("model", "77-1"), ("firmware", "2.4.1")]
    for bad in ("model", "Model=x(y)", "model=[", "model=no group"):
        with pytest.raises(ValueError):
            parse_field_pattern(bad)
    assert FieldPattern("x", "(a)").compiled().groups == 1


def test_faces_are_blurred_and_nothing_else_changes() -> None:
    faces = FaceBlur()
    frame, (x0, y0, x1, y1) = with_face(label())
    assert len(faces.detect(frame)) == 1, "the photograph's face is found"
    blurred, count = faces.blur(frame)
    assert count == 1
    assert faces.detect(blurred, threshold=0.3) == [], "no face left, even at a lower threshold"
    changed = np.any(blurred != frame, axis=2)
    ys, xs = np.nonzero(changed)
    assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1, "only inside the photo"
    assert changed.sum() < 0.25 * 320 * 320, "only the face, not the whole photograph"
    assert faces.blur(label())[1] == 0, "a label has no face"
    small = label()  # the photograph at 192 px: a face about 36 px wide in a 1280x720 frame
    small[100:292, 700:892] = cv2.resize(astronaut(), (192, 192), interpolation=cv2.INTER_AREA)
    assert faces.blur(small)[1] == 1
    photo = cv2.resize(label(), (4000, 3000))  # a 12 MP photo with a face about 48 px wide
    photo[1000:1256, 2500:2756] = cv2.resize(astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    blurred, count = faces.blur(photo)
    assert count == 1 and faces.detect(blurred, threshold=0.3) == []
    ys, xs = np.nonzero(np.any(blurred != photo, axis=2))
    assert xs.min() >= 2500 and xs.max() < 2756 and ys.min() >= 1000 and ys.max() < 1256, "only the photo"


async def test_the_pool_is_bounded_and_gives_up_in_time(reader: TextReader) -> None:
    big = cv2.resize(label(), (4000, 3000))
    pool = VisionPool(workers=1, queue_limit=0, timeout=30)
    first = asyncio.ensure_future(pool.run(lambda: read_picture(big, reader, DEFAULT_PATTERNS)))
    await asyncio.sleep(0)
    with pytest.raises(Busy):
        await pool.run(lambda: read_picture(big, reader, DEFAULT_PATTERNS))
    assert {f.value for f in (await first).found} >= {SERIAL, EAN}
    quick = VisionPool(workers=1, queue_limit=1, timeout=0.05)
    started = time.monotonic()
    with pytest.raises(TimedOut):
        await quick.run(lambda: read_picture(big, reader, DEFAULT_PATTERNS))
    assert time.monotonic() - started < 0.5, "the caller is answered when the timeout runs out"
    assert quick.pending == 1, "the reading still holds its place until it really ends"
    if sys.platform == "linux":  # readings yield the cores to the rest of the server
        assert await pool.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())) == 10
    pool.close()
    quick.close()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_the_models_are_read_with_no_network(tmp_path: Path) -> None:
    """Nothing is downloaded at run time: a process with no network at all reads a label."""
    script = tmp_path / "offline.py"
    script.write_text(
        "from tests.test_vision import label\n"
        "from visassist.vision.faces import FaceBlur\n"
        "from visassist.vision.ocr import TextReader\n"
        "from visassist.vision.patterns import DEFAULT_PATTERNS\n"
        "from visassist.vision.reading import read_picture\n"
        "print(sorted(f.value for f in read_picture(label(), TextReader(), DEFAULT_PATTERNS).found))\n"
        "print(FaceBlur().blur(__import__('tests.test_vision').test_vision.with_face(label())[0])[1])\n")
    done = subprocess.run(["unshare", "--net", sys.executable, str(script)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [str(sorted(["XR-500", SERIAL, "00:1A:2B:3C:4D:5E", EAN, QR])), "1"]


async def wait_for(participant: FakeParticipant, kind: str, seconds: float = 30) -> dict[str, Any]:
    return await participant.expect(kind, timeout=seconds)


async def test_a_snapshot_is_stored_blurred_then_read_and_confirmed(
        aiohttp_client: ClientFactory, settings: Settings) -> None:
    receiver = Receiver(free_port())
    await receiver.up()
    try:
        client, auth = await start_app(aiohttp_client, settings)
        await register(client, auth, receiver, ["snapshot.captured", "session.ended"])
        session = await (await client.post("/api/v1/sessions", json={"ticket_id": "ZD-7", "tier": 2},
                                           headers=auth)).json()
        agent = FakeParticipant(client, token_of(session["agent_url"]))
        customer = FakeParticipant(client, token_of(session["customer_url"]))
        await agent.join()
        await customer.join()
        camera = MarkerTrack(1280, 720)
        camera.image, _ = with_face(camera.image)
        await customer.negotiate(send=camera)
        await agent.media("camera", "live")
        await agent.send({"type": "snapshot", "request_id": "r", "annotations": [
            {"kind": "rect", "points": [[0.6, 0.5], [0.95, 0.95]]}]})
        stored = (await wait_for(agent, "snapshot.stored"))["snapshot"]
        assert stored["faces_blurred"] == 1
        for kind in ("raw", "annotated"):
            image = decode_png(await (await client.get(stored[f"{kind}_url"].replace(
                f"/a/{token_of(session['agent_url'])}/snapshots",
                f"/api/v1/sessions/{session['id']}/snapshots"), headers=auth)).read())
            assert FaceBlur().detect(image, threshold=0.3) == [], f"no face in the stored {kind} image"
            assert detect_markers(image) == [7], "the rest of the picture is intact"

        read = await wait_for(agent, "snapshot.read")
        assert read["snapshot_id"] == stored["id"] and read["error"] is None
        chips = {f["name"]: f for f in read["fields"]}
        assert chips["serial_number"]["value"] == SERIAL and chips["serial_number"]["status"] == "suggested"

        # The ticket system corrects nothing and confirms through the API; the agent hears of it.
        chip = chips["serial_number"]
        response = await client.post(f"/api/v1/sessions/{session['id']}/fields/{chip['id']}/confirm",
                                     json={}, headers=auth)
        assert response.status == 200, await response.text()
        decided = (await wait_for(agent, "field"))["field"]
        assert decided["status"] == "confirmed" and decided["value"] == SERIAL
        assert decided["confirmed_by"].startswith("api:")
        missing = await client.post(f"/api/v1/sessions/{session['id']}/fields/fld_nope/confirm",
                                    json={}, headers=auth)
        assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
        bad = await client.post(f"/api/v1/sessions/{session['id']}/fields/{chip['id']}/confirm",
                                json={"value": ""}, headers=auth)
        assert bad.status == 422

        record = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
        assert [(f["name"], f["value"]) for f in record["fields"]] == [("serial_number", SERIAL)]
        listed = await (await client.get(f"/api/v1/sessions/{session['id']}/snapshots", headers=auth)).json()
        assert [f["value"] for f in listed["snapshots"][0]["fields"]] == [SERIAL]
        types = [e["type"] for e in record["events"]]
        assert "snapshot.read" in types and "field.confirmed" in types
        captured = next(e for e in record["events"] if e["type"] == "snapshot.captured")
        assert captured["data"]["faces_blurred"] == 1

        await client.post(f"/api/v1/sessions/{session['id']}/end", json={"outcome": "resolved"}, headers=auth)
        await receiver.wait_for(2)
        ended = next(e for e in receiver.received if e["type"] == "session.ended")
        assert [(f["name"], f["value"], f["confirmed_by"][:4]) for f in ended["data"]["fields"]] == [
            ("serial_number", SERIAL, "api:")]
        assert ended["data"]["snapshots"][0]["fields"][0]["value"] == SERIAL
        assert ended["data"]["snapshots"][0]["faces_blurred"] == 1
        await agent.close()
        await customer.close()
    finally:
        await receiver.down()


async def test_read_now_answers_the_lead_and_stores_nothing(
        aiohttp_client: ClientFactory, settings: Settings) -> None:
    client, auth = await start_app(aiohttp_client, settings)
    session = await (await client.post("/api/v1/sessions", json={"ticket_id": "ZD-8", "tier": 2},
                                       headers=auth)).json()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    await agent.join()
    await customer.join()
    await agent.send({"type": "read", "request_id": "early"})
    assert (await wait_for(agent, "error"))["code"] == "no_video"
    await customer.negotiate(send=MarkerTrack(1280, 720))
    await agent.media("camera", "live")
    await agent.send({"type": "read", "request_id": "whole"})
    whole = await wait_for(agent, "read.result")
    assert whole["request_id"] == "whole" and (whole["width"], whole["height"]) == (1280, 720)
    assert [(f["name"], f["value"]) for f in whole["found"]] == [("serial_number", SERIAL)]
    await agent.send({"type": "read", "request_id": "region", "region": [0.0, 0.5, 0.5, 1.0]})
    region = await wait_for(agent, "read.result")
    assert region["found"] == [] and region["region"] == [0.0, 0.5, 0.5, 1.0]
    await agent.send({"type": "read", "request_id": "bad", "region": [0.5, 0.5, 0.4, 0.9]})
    assert (await wait_for(agent, "error"))["code"] == "invalid_message"
    await customer.send({"type": "read", "request_id": "c"})
    assert (await customer.expect("error"))["code"] == "forbidden"
    snapshots = await (await client.get(f"/api/v1/sessions/{session['id']}/snapshots", headers=auth)).json()
    assert snapshots["snapshots"] == [], "reading now stores nothing"

    # A snapshot's chip dismissed on the socket: it stays listed as rejected, out of the record.
    await agent.send({"type": "snapshot", "request_id": "s"})
    read = await wait_for(agent, "snapshot.read")
    [chip] = read["fields"]
    await agent.send({"type": "field.reject", "field_id": chip["id"]})
    assert (await wait_for(agent, "field"))["field"]["status"] == "rejected"
    await agent.send({"type": "field.confirm", "field_id": "fld_nope"})
    assert (await wait_for(agent, "error"))["code"] == "not_found"
    listed = await (await client.get(f"/api/v1/sessions/{session['id']}/fields", headers=auth)).json()
    assert [(f["name"], f["status"]) for f in listed["fields"]] == [("serial_number", "rejected")]
    record = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    assert record["fields"] == []
    await agent.close()
    await customer.close()


async def test_both_can_be_turned_off(aiohttp_client: ClientFactory, settings: Settings) -> None:
    client, auth = await start_app(aiohttp_client, replace(settings, blur_faces=False, read_labels=False))
    session = await (await client.post("/api/v1/sessions", json={"ticket_id": "ZD-9", "tier": 2},
                                       headers=auth)).json()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    welcome = await agent.join()
    assert welcome["reading"] is False, "the console hides its Read buttons"
    await customer.join()
    camera = MarkerTrack(1280, 720)
    camera.image, _ = with_face(camera.image)
    await customer.negotiate(send=camera)
    await agent.media("camera", "live")
    await agent.send({"type": "read", "request_id": "r"})
    assert (await wait_for(agent, "error"))["code"] == "forbidden"
    await agent.send({"type": "snapshot", "request_id": "s"})
    stored = (await wait_for(agent, "snapshot.stored"))["snapshot"]
    assert stored["faces_blurred"] == 0
    raw = decode_png(await (await client.get(
        f"/api/v1/sessions/{session['id']}/snapshots/{stored['id']}/raw.png", headers=auth)).read())
    assert len(FaceBlur().detect(raw)) == 1, "with --no-blur-faces the face is stored as it was"
    await agent.close()
    await customer.close()
