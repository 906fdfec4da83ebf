"""AccountStore: people who sign in, their browser sessions, failed sign-ins and link binding."""

from __future__ import annotations

from datetime import datetime

from visassist.models import User, WebSession, utcnow
from visassist.store.sql.database import Database, _at, _ts, _user, insert_audit, shielded


class SqlAccounts:
    def __init__(self, database: Database) -> None:
        self.database = database

    @shielded
    async def create_user(self, user_id: str, email: str, name: str, role: str, password_hash: str,
                          actor: str) -> None:
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO users (id, email, name, role, password_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, email, name, role, password_hash, _ts(utcnow())))
            await insert_audit(db, actor, "user.create", user_id, {"email": email, "role": role})

    async def user_by_email(self, email: str) -> User | None:
        row = await self.database.one("SELECT * FROM users WHERE lower(email) = lower(?)", (email,))
        return None if row is None else _user(row)

    async def users(self) -> list[User]:
        return [_user(r) for r in await self.database.all("SELECT * FROM users ORDER BY created_at", ())]

    async def has_users(self) -> bool:
        return await self.database.one("SELECT 1 FROM users LIMIT 1", ()) is not None

    @shielded
    async def set_user_disabled(self, user_id: str, disabled: bool, actor: str) -> bool:
        async with self.database.transaction() as db:
            cursor = await db.execute("UPDATE users SET disabled_at = ? WHERE id = ?",
                                      (_ts(utcnow()) if disabled else None, user_id))
            if disabled:
                await db.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))
            await insert_audit(db, actor, "user.disable" if disabled else "user.enable", user_id, {})
            return cursor.rowcount == 1

    @shielded
    async def rehash_password(self, user_id: str, password_hash: str) -> None:
        async with self.database.transaction() as db:
            await db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))

    @shielded
    async def create_web_session(self, token_digest: str, user_id: str, csrf: str,
                                 expires_at: datetime) -> None:
        async with self.database.transaction() as db:
            await db.execute("DELETE FROM web_sessions WHERE expires_at < ?", (_ts(utcnow()),))
            await db.execute(
                "INSERT INTO web_sessions (digest, user_id, csrf, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (token_digest, user_id, csrf, _ts(utcnow()), _ts(expires_at)))

    async def web_session(self, token_digest: str, now: datetime) -> WebSession | None:
        row = await self.database.one(
            "SELECT w.csrf, w.expires_at AS session_expires_at, u.* FROM web_sessions w"
            " JOIN users u ON u.id = w.user_id"
            " WHERE w.digest = ? AND w.expires_at > ? AND u.disabled_at IS NULL", (token_digest, _ts(now)))
        if row is None:
            return None
        return WebSession(user=_user(row), csrf=row["csrf"], expires_at=_at(row["session_expires_at"]))

    @shielded
    async def end_web_session(self, token_digest: str) -> None:
        async with self.database.transaction() as db:
            await db.execute("DELETE FROM web_sessions WHERE digest = ?", (token_digest,))

    @shielded
    async def login_failure(self, keys: list[str], at: datetime) -> None:
        async with self.database.transaction() as db:
            for key in keys:
                await db.execute("INSERT INTO login_failures (key, at) VALUES (?, ?)", (key, _ts(at)))

    async def login_failures(self, key: str, since: datetime) -> int:
        row = await self.database.one("SELECT COUNT(*) AS n FROM login_failures WHERE key = ? AND at > ?",
                                      (key, _ts(since)))
        return int(row["n"]) if row else 0

    @shielded
    async def prune_login_failures(self, before: datetime) -> int:
        async with self.database.transaction() as db:
            cursor = await db.execute("DELETE FROM login_failures WHERE at < ?", (_ts(before),))
            return cursor.rowcount

    @shielded
    async def bind_participant(self, participant_id: str, user_id: str) -> str:
        """Bind a staff link to the first person who signs in with it; returns the bound user id."""
        async with self.database.transaction() as db:
            await db.execute("UPDATE participants SET user_id = ? WHERE id = ? AND user_id IS NULL",
                             (user_id, participant_id))
            row = await self.database.one("SELECT user_id FROM participants WHERE id = ?", (participant_id,))
            assert row is not None
            return str(row["user_id"])
