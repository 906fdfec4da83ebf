"""Errors a client may see: a stable machine-readable code apart from the human message."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


# The socket has its own codes (visassist.signalling.protocol.ErrorCode); this docstring is public,
# as the description of the code in the OpenAPI document.
class ApiErrorCode(enum.StrEnum):
    """The `code` of an error body: stable, for programs to act on; the message beside it is for people."""

    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    UNAUTHORIZED = "unauthorized"
    SIGN_IN_REQUIRED = "sign_in_required"
    FORBIDDEN = "forbidden"
    CSRF_FAILED = "csrf_failed"
    WRONG_ROLE = "wrong_role"
    NOT_YOUR_SESSION = "not_your_session"
    ADMINS_ONLY = "admins_only"
    SUPERVISORS_ONLY = "supervisors_only"
    NOT_YOUR_TICKET = "not_your_ticket"
    NOT_FOUND = "not_found"
    SESSION_NOT_FOUND = "session_not_found"
    TICKET_NOT_FOUND = "ticket_not_found"
    SNAPSHOT_NOT_FOUND = "snapshot_not_found"
    RECORDING_NOT_FOUND = "recording_not_found"
    RECORDING_MISSING = "recording_missing"
    IMAGE_MISSING = "image_missing"
    WEBHOOK_NOT_FOUND = "webhook_not_found"
    DELIVERY_NOT_FOUND = "delivery_not_found"
    INVALID_TOKEN = "invalid_token"
    NOT_FROZEN = "not_frozen"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    SESSION_ENDED = "session_ended"
    SESSION_EXPIRED = "session_expired"
    SESSION_REVOKED = "session_revoked"
    SESSION_FULL = "session_full"
    SESSION_NOT_ENDED = "session_not_ended"
    ALREADY_RATED = "already_rated"
    SNAPSHOT_LIMIT = "snapshot_limit"
    PRECONDITION_FAILED = "precondition_failed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_IMAGE = "invalid_image"
    VALIDATION_FAILED = "validation_failed"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INVALID_CURSOR = "invalid_cursor"
    EMAIL_NOT_CONFIGURED = "email_not_configured"
    SMS_NOT_CONFIGURED = "sms_not_configured"
    HTTP_ERROR = "http_error"
    INTERNAL_ERROR = "internal_error"
    INVITATION_FAILED = "invitation_failed"
    CAPACITY_EXHAUSTED = "capacity_exhausted"


@dataclass(frozen=True)
class CodeDoc:
    statuses: tuple[int, ...]  # empty: whatever status the HTTP layer refused with
    meaning: str


# The README's table of error codes is generated from this (visassist/docs.py; tests/test_docs.py).
ERROR_CODES: dict[ApiErrorCode, CodeDoc] = {
    ApiErrorCode.BAD_REQUEST: CodeDoc((400,), "the HTTP request itself is malformed"),
    ApiErrorCode.INVALID_JSON: CodeDoc((400,), "the body is not valid JSON"),
    ApiErrorCode.INVALID_IDEMPOTENCY_KEY: CodeDoc(
        (400,), "`Idempotency-Key` is not 1 to 255 printable characters"),
    ApiErrorCode.UNAUTHORIZED: CodeDoc(
        (401,), "no API key, or one that is unknown or revoked (with `WWW-Authenticate: Bearer`)"),
    ApiErrorCode.SIGN_IN_REQUIRED: CodeDoc(
        (401,), "a staff link or a staff page (home, records, analytics, admin) needs a signed-in account"),
    ApiErrorCode.FORBIDDEN: CodeDoc((403,), "refused by the HTTP layer"),
    ApiErrorCode.CSRF_FAILED: CodeDoc(
        (403,), "a form came from another site, or its token expired (reload the page)"),
    ApiErrorCode.WRONG_ROLE: CodeDoc((403,), "the signed-in account's role may not open this link"),
    ApiErrorCode.NOT_YOUR_SESSION: CodeDoc(
        (403,), "this staff link is bound to the colleague who opened it first"),
    ApiErrorCode.SUPERVISORS_ONLY: CodeDoc(
        (403,), "analytics and joining sessions silently are for supervisors and administrators"),
    ApiErrorCode.NOT_YOUR_TICKET: CodeDoc(
        (403,), "an agent or expert reads the records of tickets they took part in; supervisors and "
                "administrators read every record"),
    ApiErrorCode.ADMINS_ONLY: CodeDoc((403,), "the admin page is for administrators"),
    ApiErrorCode.NOT_FOUND: CodeDoc((404,), "no such path, or no such item in this session"),
    ApiErrorCode.SESSION_NOT_FOUND: CodeDoc((404,), "no session with that id"),
    ApiErrorCode.TICKET_NOT_FOUND: CodeDoc((404,), "no session for that ticket"),
    ApiErrorCode.SNAPSHOT_NOT_FOUND: CodeDoc((404,), "no such snapshot in this session"),
    ApiErrorCode.RECORDING_NOT_FOUND: CodeDoc((404,), "no such recording in this session"),
    ApiErrorCode.RECORDING_MISSING: CodeDoc(
        (404,), "the recording is in the record but its file is missing from storage"),
    ApiErrorCode.IMAGE_MISSING: CodeDoc(
        (404,), "the snapshot is in the record but its image is missing from storage"),
    ApiErrorCode.WEBHOOK_NOT_FOUND: CodeDoc((404,), "no (active) webhook receiver with that id"),
    ApiErrorCode.DELIVERY_NOT_FOUND: CodeDoc((404,), "no such delivery to an active webhook receiver"),
    ApiErrorCode.INVALID_TOKEN: CodeDoc((404,), "a page's own call (photo upload, rating) with a link "
                                                "that is not valid"),
    ApiErrorCode.NOT_FROZEN: CodeDoc((404,), "the held frame was asked for while the picture is live"),
    ApiErrorCode.METHOD_NOT_ALLOWED: CodeDoc((405,), "the path exists, the method does not"),
    ApiErrorCode.SESSION_ENDED: CodeDoc(
        (409, 410), "the session has ended: 409 from the API, 410 from a link's own calls"),
    ApiErrorCode.SESSION_EXPIRED: CodeDoc(
        (409, 410), "the session's `ttl_seconds` ran out: 409 from the API, 410 from a link's own calls"),
    ApiErrorCode.SESSION_REVOKED: CodeDoc(
        (409, 410), "the session was revoked: 409 from the API, 410 from a link's own calls"),
    ApiErrorCode.SESSION_FULL: CodeDoc((409,), "the session has as many participants as it may"),
    ApiErrorCode.SESSION_NOT_ENDED: CodeDoc((409,), "a rating before the session ended"),
    ApiErrorCode.ALREADY_RATED: CodeDoc((409,), "the customer rated this session already"),
    ApiErrorCode.SNAPSHOT_LIMIT: CodeDoc((409,), "the session has as many snapshots as it may"),
    ApiErrorCode.PRECONDITION_FAILED: CodeDoc(
        (412,), "`If-Match` names an ETag the session no longer has"),
    ApiErrorCode.PAYLOAD_TOO_LARGE: CodeDoc(
        (413,), "the body is too large: 64 KiB for the API, 15 MiB for a photo"),
    ApiErrorCode.UNSUPPORTED_MEDIA_TYPE: CodeDoc((415,), "refused by the HTTP layer"),
    ApiErrorCode.INVALID_IMAGE: CodeDoc(
        (415,), "an uploaded photo is not a JPEG, PNG or WebP image within the pixel limit"),
    ApiErrorCode.VALIDATION_FAILED: CodeDoc(
        (422,), "fields are missing or wrong; `details` names each field and what is wrong"),
    ApiErrorCode.IDEMPOTENCY_KEY_REUSED: CodeDoc(
        (422,), "this `Idempotency-Key` came before with a different body"),
    ApiErrorCode.INVALID_CURSOR: CodeDoc((422,), "`cursor` is not a `next_cursor` this API returned"),
    ApiErrorCode.EMAIL_NOT_CONFIGURED: CodeDoc(
        (422,), "an e-mail invitation, but the server has no `--smtp-host`"),
    ApiErrorCode.SMS_NOT_CONFIGURED: CodeDoc(
        (422,), "an SMS invitation, but the server has no `--sms-url`"),
    ApiErrorCode.HTTP_ERROR: CodeDoc((), "any other refusal of the HTTP layer, with its status"),
    ApiErrorCode.INTERNAL_ERROR: CodeDoc((500,), "the server failed; the error was logged"),
    ApiErrorCode.INVITATION_FAILED: CodeDoc(
        (502,), "the mail server or the SMS relay refused the invitation or could not be reached"),
    ApiErrorCode.CAPACITY_EXHAUSTED: CodeDoc(
        (503,), "the node carries all the live sessions it can (`--max-live-sessions`); retry in a "
                "minute"),
}


class ClientError(Exception):
    """Bad input or a refused action. Rendered as JSON on the API and as an error message on the socket."""

    status = 400

    def __init__(self, code: ApiErrorCode, message: str, *, status: int | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code.value, "message": self.message}
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
