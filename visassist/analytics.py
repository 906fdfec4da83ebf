"""Figures for team leads, computed from the sessions' timelines (the events are the source of truth).

For each session: how far the customer got in the join funnel (created -> link opened -> camera
allowed -> media connected -> connected 30 s or more), why they stopped when they did, the time from
their joining to the server's first frame, the handle time (from the customer's first join to the
end), the outcome, a Tier 3 escalation, the rating and the snapshots. Groups of sessions (all, by
tier, by agent) are summarised with counts, rates, medians and 90th percentiles.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from visassist.events import (
    CameraAllowed,
    CameraFailed,
    LinkOpened,
    MediaStarted,
    MediaStopped,
    ParticipantInvited,
    ParticipantJoined,
    ParticipantLeft,
    SessionEnded,
    SessionExpired,
    SessionRevoked,
    SnapshotCaptured,
)
from visassist.models import Outcome, Role, Status, VideoSource
from visassist.store.base import SessionFacts

CONNECTED_ENOUGH_SECONDS = 30.0
CUSTOMER_SOURCES = {VideoSource.CAMERA, VideoSource.SCREEN}

FUNNEL: tuple[tuple[str, str], ...] = (
    ("created", "Created"), ("link_opened", "Link opened"), ("camera_allowed", "Camera allowed"),
    ("media_connected", "Media connected"), ("connected_30s", "Connected 30 s or more"))
CAUSES: tuple[tuple[str, str], ...] = (
    ("camera_refused", "Camera refused"), ("no_camera", "No camera"),
    ("unsupported_browser", "Unsupported browser"), ("camera_busy", "Camera busy or failed"),
    ("ice_failure", "ICE failure (media never connected)"), ("expired_unused", "Expired unused"),
    ("gave_up", "Left before the camera"))
_FAILURE_CAUSE = {"refused": "camera_refused", "missing": "no_camera", "unsupported": "unsupported_browser",
                  "insecure": "unsupported_browser", "busy": "camera_busy", "other": "camera_busy"}
NO_ACCOUNT = "No agent account"


@dataclass(frozen=True)
class Figures:
    """One session's figures."""

    tier: int
    agent: str
    steps: frozenset[str]  # the funnel steps it reached
    cause: str | None  # why it stopped before media connected (None: it connected, or is still open)
    first_frame_seconds: float | None
    handle_seconds: float | None
    outcome: str | None
    escalated: bool
    rating: int | None
    snapshots: int


def figures(facts: SessionFacts, now: datetime) -> Figures:
    session = facts.session
    status = session.effective_status(now)
    customer_joined: datetime | None = None
    customer_ids: set[str] = set()
    opened = allowed = escalated = False
    failure: str | None = None
    first_frame: datetime | None = None
    snapshots = 0
    live: dict[str, datetime] = {}  # customer sources sending now, since when
    connected = 0.0
    closed_at: datetime | None = None

    def stop(source: str | None, at: datetime) -> None:
        nonlocal connected
        for name in [source] if source is not None else list(live):
            started = live.pop(name, None)
            if started is not None:
                connected += max(0.0, (at - started).total_seconds())

    for event in facts.events:
        data = event.data
        if isinstance(data, LinkOpened):
            opened = True
        elif isinstance(data, CameraAllowed):
            allowed = True
        elif isinstance(data, CameraFailed):
            failure = _FAILURE_CAUSE[data.reason]
        elif isinstance(data, ParticipantJoined) and data.role is Role.CUSTOMER:
            customer_ids.add(data.participant_id)
            customer_joined = customer_joined or event.at
        elif isinstance(data, MediaStarted) and data.source in CUSTOMER_SOURCES:
            first_frame = first_frame or event.at
            live.setdefault(data.source.value, event.at)
        elif isinstance(data, MediaStopped):
            stop(data.source.value, event.at)
        elif isinstance(data, ParticipantLeft) and data.role is Role.CUSTOMER:
            stop(None, event.at)
        elif isinstance(data, ParticipantInvited) and data.role is Role.EXPERT:
            escalated = True
        elif isinstance(data, SnapshotCaptured):
            snapshots += 1
        elif isinstance(data, SessionEnded | SessionExpired | SessionRevoked):
            closed_at = closed_at or event.at
    stop(None, closed_at or now)

    media = first_frame is not None
    reached = {"created"}
    if opened or allowed or media:
        reached.add("link_opened")
    if allowed or media:
        reached.add("camera_allowed")
    if media:
        reached.add("media_connected")
    if connected >= CONNECTED_ENOUGH_SECONDS:
        reached.add("connected_30s")
    cause = None
    if not media:
        if failure is not None:
            cause = failure
        elif allowed:
            cause = "ice_failure"
        elif status is Status.EXPIRED and customer_joined is None:
            cause = "expired_unused"
        elif status in (Status.ENDED, Status.EXPIRED, Status.REVOKED):
            cause = "gave_up"
    handle = None
    if status is Status.ENDED and session.ended_at is not None:
        began = customer_joined or session.started_at or session.created_at
        handle = (session.ended_at - began).total_seconds()
    return Figures(
        tier=session.tier, agent=facts.agent or NO_ACCOUNT, steps=frozenset(reached), cause=cause,
        first_frame_seconds=None if first_frame is None or customer_joined is None
        else max(0.0, (first_frame - customer_joined).total_seconds()),
        handle_seconds=None if handle is None else max(0.0, handle),
        outcome=session.outcome.value if session.outcome else None, escalated=escalated,
        rating=facts.rating.rating if facts.rating else None, snapshots=snapshots)


# Summaries (these models are the API's answer and the OpenAPI document's)


class FunnelStep(BaseModel):
    step: str
    label: str
    count: int
    rate: float  # of the sessions created


class Spread(BaseModel):
    count: int
    median: float | None
    p90: float | None


class Csat(BaseModel):
    count: int
    average: float | None
    distribution: dict[str, int]  # "1" .. "5"


class Summary(BaseModel):
    sessions: int
    funnel: list[FunnelStep]
    failures: dict[str, int]  # why sessions stopped before media connected
    time_to_first_frame_seconds: Spread
    handle_time_seconds: Spread
    outcomes: dict[str, int]
    escalations_to_tier3: int
    escalation_rate: float
    csat: Csat
    snapshots: int
    snapshots_per_session: float


class TierSummary(Summary):
    tier: int


class AgentSummary(Summary):
    agent: str


class Period(BaseModel):
    created_from: str
    created_to: str  # exclusive


class AnalyticsOut(BaseModel):
    period: Period
    overall: Summary
    by_tier: list[TierSummary]
    by_agent: list[AgentSummary]


def _spread(values: list[float]) -> Spread:
    if not values:
        return Spread(count=0, median=None, p90=None)
    p90 = values[0] if len(values) == 1 else statistics.quantiles(values, n=10, method="inclusive")[8]
    return Spread(count=len(values), median=round(statistics.median(values), 2), p90=round(p90, 2))


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def summarise(items: list[Figures]) -> dict[str, Any]:
    total = len(items)
    causes = Counter(f.cause for f in items if f.cause is not None)
    ratings = [f.rating for f in items if f.rating is not None]
    escalated = sum(f.escalated for f in items)
    snapshots = sum(f.snapshots for f in items)
    outcomes = Counter(f.outcome for f in items if f.outcome is not None)
    reached = Counter(step for f in items for step in f.steps)
    return {
        "sessions": total,
        "funnel": [FunnelStep(step=step, label=label, count=reached[step], rate=_rate(reached[step], total))
                   for step, label in FUNNEL],
        "failures": {cause: causes.get(cause, 0) for cause, _ in CAUSES},
        "time_to_first_frame_seconds": _spread([f.first_frame_seconds for f in items
                                                if f.first_frame_seconds is not None]),
        "handle_time_seconds": _spread([f.handle_seconds for f in items if f.handle_seconds is not None]),
        "outcomes": {o.value: outcomes.get(o.value, 0) for o in Outcome},
        "escalations_to_tier3": escalated, "escalation_rate": _rate(escalated, total),
        "csat": Csat(count=len(ratings), average=round(statistics.fmean(ratings), 2) if ratings else None,
                     distribution={str(n): ratings.count(n) for n in range(1, 6)}),
        "snapshots": snapshots, "snapshots_per_session": round(snapshots / total, 2) if total else 0.0,
    }


def _grouped(items: list[Figures], key: Callable[[Figures], Any]) -> list[tuple[Any, list[Figures]]]:
    groups: dict[Any, list[Figures]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return sorted(groups.items(), key=lambda pair: str(pair[0]))


def analytics(facts: Iterable[SessionFacts], created_from: datetime, created_to: datetime,
              now: datetime) -> AnalyticsOut:
    items = [figures(f, now) for f in facts]
    return AnalyticsOut(
        period=Period(created_from=created_from.isoformat(), created_to=created_to.isoformat()),
        overall=Summary(**summarise(items)),
        by_tier=[TierSummary(tier=tier, **summarise(group))
                 for tier, group in _grouped(items, lambda f: f.tier)],
        by_agent=[AgentSummary(agent=agent, **summarise(group))
                  for agent, group in _grouped(items, lambda f: f.agent)])


# CSV: one row per group, one column per figure, for a spreadsheet

def csv_text(result: AnalyticsOut) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["group", "sessions", *(step for step, _ in FUNNEL[1:]), *(cause for cause, _ in CAUSES),
              "time_to_first_frame_median_s", "time_to_first_frame_p90_s", "handle_time_median_s",
              "handle_time_p90_s", *(f"outcome_{o.value}" for o in Outcome), "escalations_to_tier3",
              "csat_count", "csat_average", *(f"csat_{n}" for n in range(1, 6)), "snapshots_per_session"]
    writer.writerow(header)
    rows: list[tuple[str, Summary]] = [("All sessions", result.overall)]
    rows += [(f"Tier {t.tier}", t) for t in result.by_tier]
    rows += [(f"Agent: {a.agent}", a) for a in result.by_agent]
    for name, summary in rows:
        ttff, handle = summary.time_to_first_frame_seconds, summary.handle_time_seconds
        writer.writerow([
            name, summary.sessions, *(step.count for step in summary.funnel[1:]),
            *(summary.failures[cause] for cause, _ in CAUSES), ttff.median, ttff.p90, handle.median,
            handle.p90,
            *(summary.outcomes[o.value] for o in Outcome), summary.escalations_to_tier3, summary.csat.count,
            summary.csat.average, *(summary.csat.distribution[str(n)] for n in range(1, 6)),
            summary.snapshots_per_session])
    return out.getvalue()
