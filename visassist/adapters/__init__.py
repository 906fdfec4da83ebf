"""Ticket-system adapters: consumers of the webhook outbox that speak a help desk's own API."""

from __future__ import annotations

from typing import Any, Protocol


class AdapterError(Exception):
    """A delivery the help desk refused or could not take; retried like a failed webhook."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Adapter(Protocol):
    scheme: str  # endpoints whose URL starts "<scheme>:" go to this adapter instead of HTTP

    async def deliver(self, event: dict[str, Any]) -> int | None:
        """Act on one webhook payload; returns the help desk's final HTTP status, if any."""
