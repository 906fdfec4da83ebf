"""Zendesk: when a session ends, an internal note on the ticket with the summary and the snapshots.

Uses Zendesk's documented Support API: each image is sent to `POST /api/v2/uploads.json?filename=…`
(the first answer's `upload.token` is passed on to the next uploads to group them), then
`PUT /api/v2/tickets/{id}.json` with `{"ticket": {"comment": {"body", "public": false, "uploads": [token]}}}`.
Authentication is an API token: Basic `{email}/token:{api_token}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp

from visassist.adapters import AdapterError
from visassist.blobs import BlobStore
from visassist.store.base import SessionReads
from visassist.webhooks import record_url as ticket_record_url

LABELS = {"serial_number": "Serial number", "model": "Model", "mac_address": "MAC address", "imei": "IMEI",
          "ean": "EAN", "upc": "UPC", "qr": "QR code", "data_matrix": "Data Matrix", "code": "Barcode"}
TICKET_NUMBER = re.compile(r"^(?:ZD-?)?(\d{1,18})$", re.IGNORECASE)


@dataclass(frozen=True)
class ZendeskConfig:
    url: str  # https://<subdomain>.zendesk.com
    email: str
    token: str


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def note(event: dict[str, Any], record_url: str) -> str:
    data = event["data"]
    lines = [f"Visual assist session ended: {data['outcome'].replace('_', ' ')}",
             f"Duration: {_duration(data.get('duration_seconds'))}"]
    if data.get("notes"):
        lines.append(f"Agent's notes: {data['notes']}")
    count = len(data.get("snapshots", []))
    lines.append(f"Snapshots: {count} attached (annotated and original)" if count else "Snapshots: none")
    fields = data.get("fields") or []
    if fields:
        lines.append("Read off the snapshots and confirmed:")
        lines += [f"- {LABELS.get(f['name'], f['name'])}: {f['value']} (confidence {f['confidence']:.0%})"
                  for f in fields]
    for recording in data.get("recordings", []):
        lines.append(f"Recording ({_duration(recording['duration_seconds'])}, WebM): {recording['url']}")
    lines.append(f"Ticket record (timeline, snapshots, chat, recording, ZIP export): {record_url}")
    return "\n".join(lines)


class ZendeskAdapter:
    scheme = "zendesk"

    def __init__(self, config: ZendeskConfig, store: SessionReads, blobs: BlobStore, public_base: str,
                 http: aiohttp.ClientSession) -> None:
        self.config = config
        self.store = store
        self.blobs = blobs
        self.public_base = public_base
        self.http = http
        self.auth = {"Authorization": aiohttp.encode_basic_auth(f"{config.email}/token", config.token)}

    async def deliver(self, event: dict[str, Any]) -> int | None:
        if event["type"] != "session.ended":
            return None
        match = TICKET_NUMBER.match(event["ticket_id"])
        if match is None:
            return None  # not a Zendesk ticket number: nothing to do, nothing to retry
        ticket = match.group(1)
        token = None
        for snapshot in event["data"].get("snapshots", []):
            stored = await self.store.snapshot(event["session_id"], snapshot["id"])
            if stored is None:
                continue  # erased since: attach what remains
            for kind, key in (("annotated", stored.annotated_key), ("original", stored.raw_key)):
                image = await self.blobs.get(key)
                if image is not None:
                    token = await self._upload(f"snapshot-{stored.id}-{kind}.png", image, token)
        record = event.get("record_url") or ticket_record_url(self.public_base, event["ticket_id"])
        comment: dict[str, Any] = {"body": note(event, record), "public": False}
        if token is not None:
            comment["uploads"] = [token]
        async with self.http.put(f"{self.config.url}/api/v2/tickets/{ticket}.json", headers=self.auth,
                                 json={"ticket": {"comment": comment}}) as response:
            if response.status != 200:
                raise AdapterError(f"Zendesk ticket update: HTTP {response.status}", response.status)
            return response.status

    async def _upload(self, filename: str, image: bytes, token: str | None) -> str:
        params = {"filename": filename, **({"token": token} if token else {})}
        async with self.http.post(f"{self.config.url}/api/v2/uploads.json", params=params,
                                  data=image, headers={**self.auth, "Content-Type": "image/png"}) as response:
            if response.status != 201:
                raise AdapterError(f"Zendesk upload: HTTP {response.status}", response.status)
            body = await response.json()
        try:
            return str(body["upload"]["token"])
        except (KeyError, TypeError):
            raise AdapterError("Zendesk upload: no upload token in the answer") from None
