"""The OpenAPI 3.1 document of /api/v1, generated from the models in visassist.schemas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from visassist import __version__
from visassist.analytics import AnalyticsOut
from visassist.schemas import (
    ConfirmFieldIn,
    CreateSessionIn,
    DeliveryListOut,
    EndSessionIn,
    ErrorOut,
    FieldListOut,
    FieldOut,
    InvitedOut,
    InviteIn,
    RecordingListOut,
    SendInvitationIn,
    SessionListOut,
    SessionOut,
    SnapshotListOut,
    TicketOut,
    WebhookCreatedOut,
    WebhookIn,
    WebhookListOut,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {400: "Malformed JSON", 401: "Missing or invalid API key", 404: "Not found",
             409: "The session is no longer open", 412: "The session changed since that ETag",
             413: "Body too large", 422: "Invalid fields"}
    return {str(s): _json(ErrorOut, words[s]) for s in statuses}


WEBHOOK_ID = {"name": "webhook_id", "in": "path", "required": True, "schema": {"type": "string"}}
SESSION_ID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _session_links() -> dict[str, Any]:
    """OpenAPI links: what a created session's id unlocks (clients and schemathesis follow them)."""
    by_id = {"session_id": "$response.body#/id"}
    return {name: {"operationId": operation, "parameters": by_id} for name, operation in (
        ("GetSession", "getSession"), ("EndSession", "endSession"), ("RevokeSession", "revokeSession"),
        ("InviteParticipant", "inviteParticipant"), ("ListSnapshots", "listSnapshots"))}


def document() -> dict[str, Any]:
    models: list[type[BaseModel]] = [CreateSessionIn, EndSessionIn, InviteIn, SendInvitationIn,
                                     WebhookIn, ConfirmFieldIn, FieldOut, FieldListOut, ErrorOut,
                                     SessionOut, InvitedOut, SnapshotListOut, RecordingListOut, TicketOut,
                                     WebhookCreatedOut, WebhookListOut, DeliveryListOut, SessionListOut,
                                     AnalyticsOut]
    _, schemas = models_json_schema([(m, "validation") for m in models],
                                    ref_template="#/components/schemas/{model}")
    png = {"description": "PNG image", "content": {"image/png": {"schema": {"type": "string",
                                                                             "format": "binary"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "visassist API", "version": __version__,
                 "description": "Create remote visual-assist sessions for support tickets and read "
                                "their record: timeline, snapshots and outcome."},
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "paths": {
            "/api/v1/sessions": {"get": {
                "operationId": "listSessions", "summary": "Sessions, newest first, filtered and paged",
                "parameters": [
                    {"name": "ticket_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "status", "in": "query",
                     "schema": {"enum": ["waiting", "live", "ended", "expired", "revoked"]}},
                    {"name": "created_after", "in": "query", "schema": {"type": "string",
                                                                        "format": "date-time"}},
                    {"name": "created_before", "in": "query", "schema": {"type": "string",
                                                                         "format": "date-time"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                "maximum": 200, "default": 50}},
                    {"name": "cursor", "in": "query", "description": "next_cursor of the previous page",
                     "schema": {"type": "string"}}],
                "responses": {"200": _json(SessionListOut, "One page"), **_errors(401, 422)}},
                "post": {
                "operationId": "createSession", "summary": "Create a session for a ticket",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                "description": "A retry with the same key and body within 24 hours "
                                               "returns the first call's session "
                                               "(header Idempotent-Replayed: true)",
                                "schema": {"type": "string", "minLength": 1, "maxLength": 255}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref(CreateSessionIn)}}},
                "responses": {"201": {**_json(SessionOut, "Created, with customer_url and agent_url "
                                                          "(also returned by GET while the session is open)"),
                                      "links": _session_links()},
                              **_errors(400, 401, 413, 422)}}},
            "/api/v1/sessions/{session_id}": {"get": {
                "operationId": "getSession", "summary": "A session with its timeline and snapshots",
                "description": "Answers with an ETag that changes with every event; If-None-Match "
                               "with it gives 304 when nothing happened.",
                "parameters": [SESSION_ID, {"name": "If-None-Match", "in": "header",
                                            "schema": {"type": "string"}}],
                "responses": {"200": _json(SessionOut, "The session"),
                              "304": {"description": "Unchanged since that ETag"}, **_errors(401, 404)}}},
            "/api/v1/sessions/{session_id}/revoke": {"post": {
                "operationId": "revokeSession",
                "summary": "Withdraw the links at once and disconnect whoever is in",
                "parameters": [SESSION_ID],
                "responses": {"200": _json(SessionOut, "The revoked session"), **_errors(401, 404, 409)}}},
            "/api/v1/sessions/{session_id}/end": {"post": {
                "operationId": "endSession", "summary": "End a session with an outcome",
                "parameters": [SESSION_ID, {"name": "If-Match", "in": "header", "required": False,
                                            "description": "ETag from GET: refuse (412) if the session "
                                                           "changed since",
                                            "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref(EndSessionIn)}}},
                "responses": {"200": _json(SessionOut, "The ended session"),
                              **_errors(400, 401, 404, 409, 412, 413, 422)}}},
            "/api/v1/sessions/{session_id}/participants": {"post": {
                "operationId": "inviteParticipant",
                "summary": "Bring a Tier 3 expert or a supervisor in; returns their link (shown once)",
                "parameters": [SESSION_ID],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref(InviteIn)}}},
                "responses": {"201": _json(InvitedOut, "The new participant and their link"),
                              **_errors(400, 401, 404, 409, 413, 422)}}},
            "/api/v1/sessions/{session_id}/invitations": {"post": {
                "operationId": "sendInvitation",
                "summary": "Send the customer their link by e-mail or SMS",
                "parameters": [SESSION_ID],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref(SendInvitationIn)}}},
                "responses": {"200": {"description": "Handed to the mail server or SMS provider",
                                      "content": {"application/json": {"schema": {
                                          "type": "object", "properties": {
                                              "sent": {"enum": ["email", "sms"]},
                                              "to": {"type": "string"}}}}}},
                              "502": _json(ErrorOut, "The mail server or SMS provider failed"),
                              **_errors(400, 401, 404, 409, 413, 422)}}},
            "/api/v1/sessions/{session_id}/snapshots": {"get": {
                "operationId": "listSnapshots", "summary": "A session's snapshots, oldest first",
                "parameters": [SESSION_ID],
                "responses": {"200": _json(SnapshotListOut, "Snapshots"), **_errors(401, 404)}}},
            "/api/v1/sessions/{session_id}/fields": {"get": {
                "operationId": "listFields",
                "summary": "Values read off the session's snapshots (serial numbers, models, MAC "
                           "addresses, IMEIs, barcodes, QR codes): suggested, confirmed or dismissed",
                "parameters": [SESSION_ID],
                "responses": {"200": _json(FieldListOut, "Fields, oldest first"), **_errors(401, 404)}}},
            "/api/v1/sessions/{session_id}/fields/{field_id}/confirm": {"post": {
                "operationId": "confirmField",
                "summary": "Confirm a value read off a snapshot, or give the right one (`value`); "
                           "confirmed fields are in the record, the webhooks and the Zendesk note",
                "parameters": [SESSION_ID, {"name": "field_id", "in": "path", "required": True,
                                            "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref(ConfirmFieldIn)}}},
                "responses": {"200": _json(FieldOut, "The confirmed field"),
                              **_errors(400, 401, 404, 409, 413, 422)}}},
            "/api/v1/sessions/{session_id}/recordings": {"get": {
                "operationId": "listRecordings",
                "summary": "A session's recordings (sessions created with record: true), oldest first",
                "parameters": [SESSION_ID],
                "responses": {"200": _json(RecordingListOut, "Recordings"), **_errors(401, 404)}}},
            "/api/v1/sessions/{session_id}/recordings/{recording_id}": {"get": {
                "operationId": "getRecording",
                "summary": "A recording as WebM (VP8 and Opus); Range requests let a player seek",
                "parameters": [SESSION_ID, {"name": "recording_id", "in": "path", "required": True,
                                            "schema": {"type": "string"}},
                               {"name": "Range", "in": "header", "required": False,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The whole file",
                                      "content": {"video/webm": {"schema": {
                                          "type": "string", "format": "binary"}}}},
                              "206": {"description": "The requested byte range",
                                      "content": {"video/webm": {"schema": {
                                          "type": "string", "format": "binary"}}}},
                              **_errors(401, 404)}}},
            "/api/v1/sessions/{session_id}/snapshots/{snapshot_id}/{kind}.png": {"get": {
                "operationId": "getSnapshotImage", "summary": "The raw or the annotated image",
                "parameters": [SESSION_ID,
                               {"name": "snapshot_id", "in": "path", "required": True,
                                "schema": {"type": "string"}},
                               {"name": "kind", "in": "path", "required": True,
                                "schema": {"enum": ["raw", "annotated"]}}],
                "responses": {"200": png, **_errors(401, 404)}}},
            "/api/v1/webhooks": {
                "post": {"operationId": "createWebhook",
                         "summary": "Register a webhook receiver; the signing secret is shown once",
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": _ref(WebhookIn)}}},
                         "responses": {"201": _json(WebhookCreatedOut, "The receiver and its secret"),
                                       **_errors(400, 401, 413, 422)}},
                "get": {"operationId": "listWebhooks", "summary": "Registered receivers (no secrets)",
                        "responses": {"200": _json(WebhookListOut, "Receivers"), **_errors(401)}}},
            "/api/v1/webhooks/{webhook_id}": {"delete": {
                "operationId": "deleteWebhook", "summary": "Stop sending to a receiver",
                "parameters": [WEBHOOK_ID],
                "responses": {"204": {"description": "Removed; its pending deliveries are cancelled"},
                              **_errors(401, 404)}}},
            "/api/v1/webhooks/{webhook_id}/deliveries": {"get": {
                "operationId": "listDeliveries", "summary": "Deliveries to a receiver with every attempt",
                "parameters": [WEBHOOK_ID, {"name": "status", "in": "query", "required": False,
                                            "schema": {"enum": ["pending", "delivered", "failed",
                                                                "cancelled"]}}],
                "responses": {"200": _json(DeliveryListOut, "Newest first"), **_errors(401, 404, 422)}}},
            "/api/v1/webhooks/deliveries/{delivery_id}/redeliver": {"post": {
                "operationId": "redeliver", "summary": "Send a delivery again (same event id)",
                "parameters": [{"name": "delivery_id", "in": "path", "required": True,
                                "schema": {"type": "integer"}}],
                "responses": {"202": {"description": "Queued"}, **_errors(401, 404)}}},
            "/api/v1/analytics": {"get": {
                "operationId": "getAnalytics",
                "summary": "Figures for the sessions created in a period, overall, by tier and by agent: the "
                           "join funnel with its failure causes, time to first frame, handle time, "
                           "outcomes, Tier 3 escalations, CSAT and snapshots",
                "parameters": [{"name": name, "in": "query", "required": False,
                                "description": f"{word} day (UTC) whose created sessions count; "
                                               "the last 7 days to today when left out",
                                "schema": {"type": "string", "format": "date"}}
                               for name, word in (("from", "The first"), ("to", "The last"))],
                "responses": {"200": _json(AnalyticsOut, "The figures"), **_errors(401, 422)}}},
            "/api/v1/tickets/{ticket_id}": {"delete": {
                "operationId": "eraseTicket",
                "summary": "Erase a ticket's media and personal data; anonymous figures stay",
                "parameters": [{"name": "ticket_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "What was erased", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "ticket_id": {"type": "string"},
                        "erased": {"type": "object", "additionalProperties": {"type": "integer"}}}}}}},
                    **_errors(401, 404)}},
                "get": {
                "operationId": "getTicket", "summary": "The ticket's record: every session",
                "parameters": [{"name": "ticket_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json(TicketOut, "The record"), **_errors(401, 404)}}},
        },
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "An API key from `visassist api-key create`"}},
        },
    }
