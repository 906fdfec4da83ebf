"""The schema as SQLite databases had it before Alembic (PRAGMA user_version 5).

Revision ID: 0001
Revises:
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite's rowid alias must be exactly INTEGER; PostgreSQL gets 64-bit ids.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def text(name: str, **kw: object) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=bool(kw.pop("nullable", False)), **kw)  # type: ignore[arg-type]


def number(name: str, **kw: object) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=bool(kw.pop("nullable", False)), **kw)  # type: ignore[arg-type]


def ref(name: str, target: str, type_: sa.types.TypeEngine[Any] | None = None,
        **kw: object) -> sa.Column[Any]:
    return sa.Column(name, type_ if type_ is not None else sa.Text(), sa.ForeignKey(target),
                     nullable=False, **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table("api_keys", text("id", primary_key=True), text("name"),
                    text("key_digest", unique=True), text("created_at"),
                    text("last_used_at", nullable=True), text("revoked_at", nullable=True))
    op.create_table("sessions", text("id", primary_key=True), text("ticket_id"), number("tier"),
                    text("customer"), text("status"), text("created_at"), text("expires_at"),
                    text("started_at", nullable=True), text("ended_at", nullable=True),
                    text("outcome", nullable=True), text("notes", nullable=True),
                    text("ended_by", nullable=True), number("audio", server_default="0"),
                    number("record", server_default="0"))
    op.create_index("sessions_ticket", "sessions", ["ticket_id", "created_at"])
    op.create_index("sessions_open", "sessions", ["status"],
                    sqlite_where=sa.text("status IN ('waiting', 'live')"),
                    postgresql_where=sa.text("status IN ('waiting', 'live')"))
    op.create_table("participants", text("id", primary_key=True),
                    ref("session_id", "sessions.id"),
                    text("role"), text("name"), text("token_digest", unique=True), text("created_at"),
                    text("user_id", nullable=True))
    op.create_index("participants_session", "participants", ["session_id"])
    op.create_table("events", sa.Column("seq", Id, primary_key=True, autoincrement=True),
                    ref("session_id", "sessions.id"),
                    text("type"), text("at"), text("actor"), text("data"),
                    number("outbox_pending", server_default="0"), sqlite_autoincrement=True)
    op.create_index("events_session", "events", ["session_id", "seq"])
    op.create_index("events_outbox", "events", ["seq"], sqlite_where=sa.text("outbox_pending = 1"),
                    postgresql_where=sa.text("outbox_pending = 1"))
    op.create_table("snapshots", text("id", primary_key=True),
                    ref("session_id", "sessions.id"),
                    text("ticket_id"), text("taken_at"), text("taken_by"), text("source"), number("width"),
                    number("height"), text("annotations"), text("raw_key"), text("annotated_key"))
    op.create_index("snapshots_session", "snapshots", ["session_id", "taken_at"])
    op.create_table("webhook_endpoints", text("id", primary_key=True), text("url"), text("secret"),
                    text("events"), text("created_at"), text("disabled_at", nullable=True))
    op.create_table("deliveries", sa.Column("id", Id, primary_key=True, autoincrement=True),
                    ref("endpoint_id", "webhook_endpoints.id"),
                    sa.Column("event_seq", Id, nullable=False), text("session_id"), text("type"),
                    text("payload"), text("status", server_default="pending"),
                    number("attempts", server_default="0"), text("next_attempt_at"),
                    text("last_error", nullable=True), text("created_at"),
                    text("delivered_at", nullable=True),
                    sqlite_autoincrement=True)
    op.create_index("deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.create_index("deliveries_order", "deliveries", ["endpoint_id", "session_id", "id"])
    op.create_table("delivery_attempts", sa.Column("id", Id, primary_key=True, autoincrement=True),
                    ref("delivery_id", "deliveries.id", Id),
                    text("at"), number("status_code", nullable=True), text("error", nullable=True),
                    number("duration_ms"), sqlite_autoincrement=True)
    op.create_index("attempts_delivery", "delivery_attempts", ["delivery_id", "id"])
    op.create_table("idempotency_keys", text("api_key_id"), text("key"), text("request_digest"),
                    text("session_id"), text("created_at"), sa.PrimaryKeyConstraint("api_key_id", "key"))
    # SQLite compared e-mail addresses case-blind by collation; 0002 makes that portable.
    email = sa.Text(collation="NOCASE") if sqlite else sa.Text()
    op.create_table("users", text("id", primary_key=True),
                    sa.Column("email", email, nullable=False, unique=True), text("name"), text("role"),
                    text("password_hash"), text("created_at"), text("disabled_at", nullable=True))
    op.create_table("web_sessions", text("digest", primary_key=True),
                    ref("user_id", "users.id"),
                    text("csrf"), text("created_at"), text("expires_at"))
    op.create_table("login_failures", text("key"), text("at"))
    op.create_index("login_failures_key", "login_failures", ["key", "at"])
    op.create_table("audit_log", sa.Column("id", Id, primary_key=True, autoincrement=True), text("at"),
                    text("actor"), text("action"), text("target"), text("data"), sqlite_autoincrement=True)
    op.create_table("ratings",
                    ref("session_id", "sessions.id", primary_key=True),
                    number("rating"), text("comment"), text("at"))
    op.create_table("recordings", text("id", primary_key=True),
                    ref("session_id", "sessions.id"),
                    text("ticket_id"), text("started_at"), text("ended_at"),
                    sa.Column("duration_seconds", sa.Float(), nullable=False), number("size_bytes"),
                    number("width"), number("height"), text("key"))
    op.create_index("recordings_session", "recordings", ["session_id", "started_at"])


def downgrade() -> None:
    for table in ("recordings", "ratings", "audit_log", "login_failures", "web_sessions", "users",
                  "idempotency_keys", "delivery_attempts", "deliveries", "webhook_endpoints", "snapshots",
                  "events", "participants", "sessions", "api_keys"):
        op.drop_table(table)
