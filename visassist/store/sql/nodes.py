"""NodeStore: the nodes sharing the database, where sessions are placed, and what happens to the
sessions of a node that stops beating."""

from __future__ import annotations

from datetime import datetime

from visassist.events import Event, SessionMoved
from visassist.models import Node, NodeState
from visassist.store.sql.database import Database, Row, _at, _event, _ts, insert_event, shielded

# Open sessions placed on each node: its load as placement counts it (a session is counted from the
# moment it is placed, before anyone joins).
_NODES = (
    "SELECT n.*, (SELECT COUNT(*) FROM sessions s WHERE s.node_id = n.id"
    " AND s.status IN ('waiting', 'live') AND s.expires_at > ?) AS sessions FROM nodes n"
)


def _node(row: Row) -> Node:
    return Node(id=row["id"], url=row["url"], capacity=row["capacity"], load=row["load"],
                state=NodeState(row["state"]), started_at=_at(row["started_at"]),
                heartbeat_at=_at(row["heartbeat_at"]), sessions=int(row["sessions"]))


class SqlNodes:
    def __init__(self, database: Database) -> None:
        self.database = database

    @shielded
    async def register_node(self, node_id: str, url: str, capacity: int, at: datetime) -> None:
        """This node is up (again): active, at this URL, with this capacity."""
        # One row of its own: nothing to serialise against (and a beat never races a fail-over into a
        # retry storm).
        async with self.database.transaction(serializable=False) as db:
            await db.execute(
                "INSERT INTO nodes (id, url, capacity, load, state, started_at, heartbeat_at)"
                " VALUES (?, ?, ?, 0, 'active', ?, ?) ON CONFLICT (id) DO UPDATE SET url = excluded.url,"
                " capacity = excluded.capacity, load = 0, state = 'active',"
                " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
                (node_id, url, capacity, _ts(at), _ts(at)))

    @shielded
    async def heartbeat(self, node_id: str, load: int, at: datetime) -> NodeState | None:
        """Record that the node is alive; returns its state (None if it is not registered)."""
        async with self.database.transaction(serializable=False) as db:
            await db.execute("UPDATE nodes SET heartbeat_at = ?, load = ? WHERE id = ?",
                             (_ts(at), load, node_id))
            row = await db.one("SELECT state FROM nodes WHERE id = ?", (node_id,))
            return None if row is None else NodeState(row["state"])

    @shielded
    async def set_node_state(self, node_id: str, state: NodeState) -> bool:
        async with self.database.transaction(serializable=False) as db:
            result = await db.execute("UPDATE nodes SET state = ? WHERE id = ?", (state.value, node_id))
            return result.rowcount == 1

    async def nodes(self, now: datetime) -> list[Node]:
        return [_node(r) for r in await self.database.all(f"{_NODES} ORDER BY n.id", (_ts(now),))]

    async def place(self, now: datetime, alive_since: datetime) -> Node | None:
        """The active node, beating since `alive_since`, with room for one more live session and the
        fewest open sessions; None when every node is full, draining or silent."""
        rows = await self.database.all(
            f"{_NODES} WHERE n.state = 'active' AND n.heartbeat_at >= ? ORDER BY sessions, n.load, n.id",
            (_ts(now), _ts(alive_since)))
        # Room is what each node said at its last beat (live rooms, or its capacity when full).
        return next((node for node in map(_node, rows) if node.load < node.capacity), None)

    @shielded
    async def fail_over(self, silent_since: datetime, now: datetime) -> list[Event]:
        """Mark nodes that have not beaten since `silent_since` dead, and place the open sessions of
        dead nodes and of nodes stopped that long (not back from a restart) on the least-loaded live
        nodes; one `session.moved` event per session. Whichever node runs this first does the work:
        the others find nothing left."""
        async with self.database.transaction() as db:
            await db.execute("UPDATE nodes SET state = 'dead', load = 0 WHERE state IN ('active', 'draining')"
                             " AND heartbeat_at < ?", (_ts(silent_since),))
            rows = await db.all(
                "SELECT s.id, s.node_id FROM sessions s JOIN nodes n ON n.id = s.node_id"
                " WHERE n.state IN ('dead', 'stopped') AND n.heartbeat_at < ?"
                " AND s.status IN ('waiting', 'live') AND s.expires_at > ? ORDER BY s.created_at",
                (_ts(silent_since), _ts(now)))
            events: list[Event] = []
            for row in rows:
                target = await self.place(now, silent_since)
                to = target.id if target else None
                await db.execute("UPDATE sessions SET node_id = ? WHERE id = ?", (to, row["id"]))
                events.append(await insert_event(
                    db, row["id"], SessionMoved(from_node=row["node_id"], to_node=to), "system", now))
            return events

    @shielded
    async def place_session(self, session_id: str, node_id: str) -> bool:
        """Put a session that waits for a node (none had room when its own died) on `node_id`."""
        async with self.database.transaction() as db:
            result = await db.execute(
                "UPDATE sessions SET node_id = ? WHERE id = ? AND node_id IS NULL", (node_id, session_id))
            return result.rowcount == 1

    async def event(self, seq: int) -> Event | None:
        row = await self.database.one("SELECT * FROM events WHERE seq = ?", (seq,))
        return None if row is None else _event(row)
