"""Errors a client may see: a stable machine-readable code apart from the human message."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Bad input or a refused action. Rendered as JSON on the API and as an error message on the socket."""

    status = 400

    def __init__(self, code: str, message: str, *, status: int | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class NotFound(ClientError):
    status = 404


class Unauthorized(ClientError):
    status = 401


class Forbidden(ClientError):
    status = 403


class Conflict(ClientError):
    status = 409


class Gone(ClientError):
    status = 410
