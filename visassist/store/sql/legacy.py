"""The schema steps of SQLite databases made before Alembic (PRAGMA user_version 1 to 5).

A database from then is brought to version 5 with these, then stamped with Alembic's baseline revision
(which creates the same tables on a new database); from there on, Alembic migrates it.
"""

from __future__ import annotations

# Each entry moves the schema one version on; PRAGMA user_version records where a database is.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        key_digest TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        ticket_id TEXT NOT NULL,
        tier INTEGER NOT NULL,
        customer TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT,
        outcome TEXT,
        notes TEXT,
        ended_by TEXT
    );
    CREATE INDEX sessions_ticket ON sessions (ticket_id, created_at);
    CREATE INDEX sessions_open ON sessions (status) WHERE status IN ('waiting', 'live');
    CREATE TABLE participants (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id),
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        token_digest TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE INDEX participants_session ON participants (session_id);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL REFERENCES sessions (id),
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_session ON events (session_id, seq);
    CREATE TABLE snapshots (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id),
        ticket_id TEXT NOT NULL,
        taken_at TEXT NOT NULL,
        taken_by TEXT NOT NULL,
        source TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        annotations TEXT NOT NULL,
        raw_key TEXT NOT NULL,
        annotated_key TEXT NOT NULL
    );
    CREATE INDEX snapshots_session ON snapshots (session_id, taken_at);
    """,
    """
    ALTER TABLE sessions ADD COLUMN audio INTEGER NOT NULL DEFAULT 0;
    """,
    """
    CREATE TABLE webhook_endpoints (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        events TEXT NOT NULL,
        created_at TEXT NOT NULL,
        disabled_at TEXT
    );
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id),
        event_seq INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        delivered_at TEXT
    );
    CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
    CREATE INDEX deliveries_order ON deliveries (endpoint_id, session_id, id);
    CREATE TABLE delivery_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
        at TEXT NOT NULL,
        status_code INTEGER,
        error TEXT,
        duration_ms INTEGER NOT NULL
    );
    CREATE INDEX attempts_delivery ON delivery_attempts (delivery_id, id);
    CREATE TABLE idempotency_keys (
        api_key_id TEXT NOT NULL,
        key TEXT NOT NULL,
        request_digest TEXT NOT NULL,
        session_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (api_key_id, key)
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        disabled_at TEXT
    );
    CREATE TABLE web_sessions (
        digest TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id),
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE login_failures (
        key TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX login_failures_key ON login_failures (key, at);
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        data TEXT NOT NULL
    );
    ALTER TABLE participants ADD COLUMN user_id TEXT;
    CREATE TABLE ratings (
        session_id TEXT PRIMARY KEY REFERENCES sessions (id),
        rating INTEGER NOT NULL,
        comment TEXT NOT NULL,
        at TEXT NOT NULL
    );
    """,
    """
    ALTER TABLE sessions ADD COLUMN record INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id),
        ticket_id TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT NOT NULL,
        duration_seconds REAL NOT NULL,
        size_bytes INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        key TEXT NOT NULL
    );
    CREATE INDEX recordings_session ON recordings (session_id, started_at);
    """,
    # The webhook outbox subscribes to events: an event waits here until its deliveries are enqueued,
    # so a crash between the two is caught up at start.
    """
    ALTER TABLE events ADD COLUMN outbox_pending INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX events_outbox ON events (seq) WHERE outbox_pending = 1;
    """,
]
