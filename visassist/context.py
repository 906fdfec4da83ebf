"""Everything a request handler needs, built once per application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from aiohttp import web
from aiortc import RTCConfiguration

from visassist.blobs import BlobStore
from visassist.config import Settings
from visassist.events import Bus
from visassist.metrics import Metrics
from visassist.nodes import Nodes
from visassist.sessions import SessionService
from visassist.signalling.room import Hub
from visassist.store import Store
from visassist.webhooks import Outbox


@dataclass
class AppContext:
    KEY: ClassVar[web.AppKey[AppContext]]

    settings: Settings
    store: Store
    blobs: BlobStore
    hub: Hub
    sessions: SessionService
    bus: Bus
    outbox: Outbox
    nodes: Nodes
    rtc_configuration: RTCConfiguration
    metrics: Metrics


AppContext.KEY = web.AppKey("visassist", AppContext)
