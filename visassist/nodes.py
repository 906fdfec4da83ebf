"""This node among the others sharing one database: it registers and beats, places new sessions on the
least-loaded live node, fails over nodes that stop beating, and relays recorded events to the node
whose room they concern.

On SQLite there is one node and the relay is idle. On PostgreSQL the relay is LISTEN/NOTIFY: after an
event commits, its node says `NOTIFY visassist_events` with the event's number; every other node fetches
it and hands it to its rooms (visassist/signalling/live.py), which ignore sessions they do not hold. So
ending a session through any node's API ends the call on the node that carries it, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import psycopg
from sqlalchemy.engine import make_url

from visassist.config import Settings
from visassist.events import Bus, Event
from visassist.models import Node, NodeState, Session
from visassist.signalling.room import Hub
from visassist.store import Store
from visassist.store.sql import Database

log = logging.getLogger(__name__)

CHANNEL = "visassist_events"
HEARTBEAT = timedelta(seconds=1)
# A node silent this long is dead: long enough for a busy event loop or a database failover, short
# enough that its people are moved within seconds.
SILENT_AFTER = timedelta(seconds=5)


def alive(nodes: list[Node], now: datetime) -> list[Node]:
    """The nodes beating lately and serving (active, or draining their calls)."""
    return [node for node in nodes if node.heartbeat_at >= now - SILENT_AFTER
            and node.state in (NodeState.ACTIVE, NodeState.DRAINING)]


class Moving(Exception):
    """The session's node stopped answering and the session is not placed elsewhere yet."""


def node_id(settings: Settings) -> str:
    return settings.node_id or f"{socket.gethostname()}:{settings.port}"


class Nodes:
    def __init__(self, settings: Settings, store: Store, database: Database, hub: Hub, bus: Bus,
                 rooms: Callable[[Event], Awaitable[None]], clock: Callable[[], datetime]) -> None:
        self.id = node_id(settings)
        self.settings = settings
        self.store = store
        self.database = database
        self.hub = hub
        self.bus = bus
        # Given the events other nodes record: the live rooms (which ignore sessions not here), and
        # whatever else shows the whole cluster (the staff home board).
        self._relayed_to: list[Callable[[Event], Awaitable[None]]] = [rooms]
        self.clock = clock
        # As of the last heartbeat: every other node's URL (the pages' CSP may reach them) and those of
        # the live ones (`welcome` names them, where to ask should this node stop answering).
        self.known: list[str] = []
        self.peers: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return (self.settings.node_url or self.settings.base_url).rstrip("/")

    async def start(self) -> None:
        await self.store.register_node(self.id, self.url, self.settings.max_live_sessions, self.clock())
        self._tasks.append(asyncio.create_task(self._beat(), name="node-heartbeat"))
        if self.database.dialect == "postgresql":
            self._tasks.append(asyncio.create_task(self._listen(), name="node-relay"))
            self.bus.subscribe("node relay", self._notify)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):  # the database may be what is going away
            await self.store.set_node_state(self.id, NodeState.STOPPED)

    async def place(self) -> Node | None:
        """The node a new session goes to, or None when no node can take one. This node's own load is
        brought up to date first; the others' are at most a heartbeat old."""
        now = self.clock()
        await self.store.heartbeat(self.id, self.hub.load(), now)
        return await self.store.place(now, now - SILENT_AFTER)

    async def url_of(self, node_id: str | None) -> str | None:
        """The base of links to a session on `node_id`; None for this node without a --node-url (the
        links then follow the address the request came to, as on a single node)."""
        if node_id is None or node_id == self.id:
            return self.settings.node_url.rstrip("/") if self.settings.node_url else None
        for node in await self.store.nodes(self.clock()):
            if node.id == node_id:
                return node.url
        return None

    async def where(self, session: Session) -> str | None:
        """Where a session's people belong: None for this node, else the base URL of the live node that
        carries it. A session no node had room for when its own died is taken on here; one whose node
        died a moment ago, before it was moved, raises Moving (its people try again shortly)."""
        if session.node_id == self.id:
            return None
        if session.node_id is None:
            await self.store.place_session(session.id, self.id)
            return None
        now = self.clock()
        for node in alive(await self.store.nodes(now), now):
            if node.id == session.node_id:
                return node.url
        raise Moving(session.node_id)

    async def _beat(self) -> None:
        while True:
            try:
                now = self.clock()
                state = await self.store.heartbeat(self.id, self.hub.load(), now)
                if state is NodeState.DEAD or state is None:
                    # Others took us for dead (a long pause) and moved our sessions: take new ones again.
                    log.warning("node %s was marked %s; registering again", self.id, state)
                    await self.store.register_node(self.id, self.url, self.settings.max_live_sessions, now)
                nodes = await self.store.nodes(now)
                self.known = sorted({n.url for n in nodes if n.id != self.id})
                self.peers = [n.url for n in alive(nodes, now) if n.id != self.id]
                if moved := await self.store.fail_over(now - SILENT_AFTER, now):
                    log.warning("moved %d sessions off silent nodes", len(moved))
                    await self.bus.publish(*moved)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node heartbeat failed")
            await asyncio.sleep(HEARTBEAT.total_seconds())

    async def _notify(self, event: Event) -> None:
        payload = json.dumps({"seq": event.seq, "session": event.session_id, "node": self.id})
        # NOTIFY is sent when its transaction commits.
        async with self.database.transaction(serializable=False) as tx:
            await tx.execute("SELECT pg_notify(?, ?)", (CHANNEL, payload))

    async def _listen(self) -> None:
        url = make_url(self.database.url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    async for notice in conn.notifies():
                        await self._relayed(json.loads(notice.payload))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event relay lost its connection; listening again")
                await asyncio.sleep(1)

    def relay_to(self, subscriber: Callable[[Event], Awaitable[None]]) -> None:
        """Also give `subscriber` the events recorded on the other nodes."""
        self._relayed_to.append(subscriber)

    async def _relayed(self, notice: dict[str, object]) -> None:
        seq = notice.get("seq")
        if notice.get("node") == self.id or not isinstance(seq, int):
            return
        event = await self.store.event(seq)
        if event is None:
            return
        for subscriber in self._relayed_to:
            try:
                await subscriber(event)
            except Exception:
                log.exception("relayed event %d failed in %s", seq, subscriber)
