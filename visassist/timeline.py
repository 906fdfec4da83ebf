"""A session's timeline as sentences a person reads (the ticket record page, its ZIP and print-out)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from visassist.events import (
    EVENT_DATA,
    AudioChanged,
    CameraAllowed,
    CameraChanged,
    CameraFailed,
    ChatMessage,
    Event,
    EventData,
    FieldConfirmed,
    FieldRejected,
    InvitationSent,
    LinkOpened,
    MediaFrozen,
    MediaStarted,
    MediaStopped,
    MediaUnfrozen,
    ParticipantInvited,
    ParticipantJoined,
    ParticipantLeft,
    PhotoRequested,
    QualityChanged,
    RecordingStarted,
    RecordingStored,
    RetentionPurged,
    SessionCreated,
    SessionEnded,
    SessionExpired,
    SessionHandover,
    SessionMoved,
    SessionRated,
    SessionRevoked,
    SnapshotAnnotated,
    SnapshotCaptured,
    SnapshotRead,
    TicketErased,
)
from visassist.models import Participant

SOURCES = {"camera": "the camera", "screen": "the shared screen", "staff_screen": "a staff screen",
           "device_photo": "a photo from the phone"}
FAILURES = {"refused": "the camera was refused", "missing": "no camera was found",
            "busy": "the camera was busy in another app",
            "unsupported": "the browser cannot make video calls",
            "insecure": "the page was not served over HTTPS", "other": "the camera did not start"}
LEFT = {"disconnected": "disconnected", "replaced": "opened the link somewhere else",
        "ended": "left as the session ended", "revoked": "was disconnected as the links were withdrawn",
        "expired": "left as the session expired"}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _plural(count: int, one: str) -> str:
    return f"{count} {one}" + ("" if count == 1 else "s")


class Narrator:
    """Names people by the session's participants; an id it does not know is named by its role."""

    def __init__(self, participants: list[Participant], users: dict[str, str] | None = None) -> None:
        self.people = {p.id: p for p in participants}
        self.users = users or {}  # user id -> name: staff links bound to a person are named by them

    def who(self, actor: str, role: str | None = None) -> str:
        person = self.people.get(actor)
        if person is not None:
            if person.user_id in self.users:
                return self.users[person.user_id]
            return person.name if person.name != person.role.value else person.role.value.capitalize()
        if actor.startswith("api"):
            return "The ticket system"
        if actor.startswith("user:"):
            return actor.removeprefix("user:")
        if actor == "system":
            return "visassist"
        return (role or "someone").capitalize()

    def sentence(self, event: Event) -> str:
        data = event.data
        text = _SENTENCES[type(data)](self, event, data)
        return text + (" (personal details erased)" if data.erased else "")


def _created(n: Narrator, e: Event, d: Any) -> str:
    return f"{n.who(e.actor)} created the session for a Tier {d.tier} agent."


def _opened(n: Narrator, e: Event, d: Any) -> str:
    where = " on ".join(part for part in (d.browser, d.os) if part) or "an unknown browser"
    return f"{n.who(e.actor)} opened the link in {where}."


def _failed(n: Narrator, e: Event, d: Any) -> str:
    return f"{n.who(e.actor)} could not start the camera: {FAILURES[d.reason]}" + (
        f" ({d.error})." if d.error else ".")


def _joined(n: Narrator, e: Event, d: Any) -> str:
    return f"{n.who(d.participant_id, d.role.value)} ({d.role.value}) {'rejoined' if d.rejoin else 'joined'}."


def _ended(n: Narrator, e: Event, d: Any) -> str:
    notes = f" Notes: {d.notes}" if d.notes else ""
    return (f"{n.who(e.actor)} ended the session as {d.outcome.value.replace('_', ' ')} after "
            f"{duration(d.duration_seconds)}.{notes}")


def _purged(n: Narrator, e: Event, d: Any) -> str:
    parts = [_plural(d.snapshots, "snapshot")] if d.snapshots else []
    parts += [_plural(d.recordings, "recording")] if d.recordings else []
    return f"The retention policy removed {' and '.join(parts) or 'old media'}."


def _snapshot(n: Narrator, e: Event, d: Any) -> str:
    if d.source.value == "device_photo":
        return f"{n.who(e.actor)}'s phone sent a full-resolution photo ({d.width}x{d.height})."
    return (f"{n.who(e.actor)} stored a snapshot of {SOURCES[d.source.value]} ({d.width}x{d.height}, "
            f"{_plural(d.shapes, 'drawn shape')}).")


def _read(n: Narrator, e: Event, d: Any) -> str:
    if d.error is not None:
        return f"A snapshot could not be read ({d.error})."
    found = ", ".join(f"{f.name.replace('_', ' ')} {f.value}" for f in d.fields or [])
    return f"A snapshot was read: {found or 'no field found'}."


def _field(n: Narrator, e: Event, d: Any) -> str:
    name = d.name.replace("_", " ")
    value = f" {d.value}" if d.value else ""
    return f"{n.who(e.actor)} {'corrected' if d.corrected else 'confirmed'} the {name}{value}."


def _camera(n: Narrator, e: Event, d: Any) -> str:
    changes = [f"{name} {value}" for name, value in (("facing", d.facing), ("torch", d.torch),
                                                     ("zoom", d.zoom)) if value is not None]
    return f"{n.who(e.actor)} changed the customer's camera ({', '.join(changes)})."


_SENTENCES: dict[type[EventData], Callable[[Narrator, Event, Any], str]] = {
    SessionCreated: _created,
    SessionEnded: _ended,
    SessionExpired: lambda n, e, d: "The session expired: its time ran out before anyone ended it.",
    SessionRevoked: lambda n, e, d: f"{n.who(e.actor)} withdrew the links.",
    SessionRated: lambda n, e, d: f"The customer rated the session {d.rating} out of 5"
                                  + (f": “{d.comment}”" if d.comment else "."),
    SessionHandover: lambda n, e, d: f"{n.who(d.from_ or '', 'agent')} handed the lead to "
                                     f"{n.who(d.to, d.role.value)} ({d.role.value}).",
    ParticipantInvited: lambda n, e, d: f"{n.who(e.actor)} invited {d.name or 'a ' + d.role.value} "
                                        f"as {d.role.value}.",
    ParticipantJoined: _joined,
    ParticipantLeft: lambda n, e, d: f"{n.who(d.participant_id, d.role.value)} {LEFT[d.reason]}.",
    LinkOpened: _opened,
    CameraAllowed: lambda n, e, d: f"{n.who(e.actor)} allowed the camera.",
    CameraFailed: _failed,
    InvitationSent: lambda n, e, d: f"The customer's link was sent by "
                                    f"{'e-mail' if d.channel == 'email' else 'SMS'} to {d.to}.",
    ChatMessage: lambda n, e, d: f"{n.who(d.participant_id, d.role.value)} wrote in the chat"
                                 + (f": “{d.text}”" if d.text else "."),
    AudioChanged: lambda n, e, d: f"{n.who(d.participant_id, d.role.value)} turned their microphone "
                                  f"{'off' if d.muted else 'on'}.",
    MediaStarted: lambda n, e, d: f"Video from {SOURCES[d.source.value]} started reaching the server "
                                  f"({d.width}x{d.height}).",
    MediaStopped: lambda n, e, d: f"Video from {SOURCES[d.source.value]} stopped.",
    MediaFrozen: lambda n, e, d: f"{n.who(e.actor)} held the picture of {SOURCES[d.source.value]}.",
    MediaUnfrozen: lambda n, e, d: f"{n.who(e.actor)} let the held picture go.",
    QualityChanged: lambda n, e, d: f"{n.who(e.actor)} asked the phone for {d.profile.replace('_', ' ')} "
                                    "quality.",
    CameraChanged: _camera,
    PhotoRequested: lambda n, e, d: f"{n.who(e.actor)} asked the phone for a full-resolution photo.",
    SnapshotCaptured: _snapshot,
    SnapshotAnnotated: lambda n, e, d: f"{n.who(e.actor)} drew on a snapshot again "
                                       f"({_plural(d.shapes, 'shape')}).",
    RecordingStarted: lambda n, e, d: "Recording started.",
    RecordingStored: lambda n, e, d: f"A recording of {duration(d.duration_seconds)} was stored.",
    TicketErased: lambda n, e, d: "The ticket's personal data and media were erased.",
    RetentionPurged: _purged,
    SessionMoved: lambda n, e, d: f"The session's server ({d.from_node}) stopped answering; it moved to "
                                  + (f"{d.to_node}." if d.to_node else "the next server with room."),
    SnapshotRead: _read,
    FieldConfirmed: _field,
    FieldRejected: lambda n, e, d: f"{n.who(e.actor)} dismissed a {d.name.replace('_', ' ')} read off a "
                                   "snapshot.",
}


assert set(_SENTENCES) == set(EVENT_DATA.values()), "every event type reads as a sentence"
