"""What a node is doing, for Prometheus: `/metrics` in its text format (prometheus-client).

Counters and histograms are driven by the event bus (JoinOutcomes is a subscriber, like the live rooms
and the webhook outbox), so the figures say what the timeline says. Gauges are read when scraped, from
what the node holds then (its rooms, the outbox's backlog, its threads' CPU time), so they cannot drift.
Every series carries the node's label, so one Prometheus can scrape every node of a deployment.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from visassist.config import Settings
from visassist.errors import ApiErrorCode, ClientError
from visassist.events import CameraFailed, Event, MediaStarted, ParticipantJoined, ParticipantLeft
from visassist.models import Role, VideoSource, utcnow
from visassist.nodes import node_id

if TYPE_CHECKING:
    from visassist.signalling.room import Hub
    from visassist.store.base import OutboxStore

log = logging.getLogger(__name__)

# Seconds. A join's first frame takes ~0.2-0.5 s on a good network and several seconds through a slow
# TURN path; a snapshot 20-150 ms, more when a long chain of frames has to be decoded first.
FIRST_FRAME_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
SNAPSHOT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class JoinOutcomes:
    """Bus subscriber: each customer join counted once, by what happened first. `connected` when the
    customer's video reached the server (and how long after the join), `camera_refused` when the page
    said the camera was blocked, `failed` with its cause otherwise: the camera missing, busy or not
    allowed on an insecure page, or the customer gone (`disconnected`) or the session closed (`ended`,
    `revoked`, `expired`) before any picture came. A socket replaced by the same link opened again is
    no outcome: the new join has one."""

    def __init__(self, joins: Counter, first_frame: Histogram, node: str) -> None:
        self.joins = joins
        self.first_frame = first_frame
        self.node = node
        self.pending: dict[tuple[str, str], tuple[float, bool]] = {}  # (session, participant) -> (t, rejoin)

    def _count(self, key: tuple[str, str], outcome: str, cause: str) -> float | None:
        started = self.pending.pop(key, None)
        if started is None:
            return None
        self.joins.labels(self.node, outcome, cause, "true" if started[1] else "false").inc()
        return time.monotonic() - started[0]

    async def __call__(self, event: Event) -> None:
        data = event.data
        if isinstance(data, ParticipantJoined) and data.role is Role.CUSTOMER:
            self.pending[(event.session_id, data.participant_id)] = (time.monotonic(), data.rejoin)
        elif isinstance(data, MediaStarted) and data.source is not VideoSource.STAFF_SCREEN:
            waited = self._count((event.session_id, data.participant_id), "connected", "")
            if waited is not None:
                self.first_frame.labels(self.node).observe(waited)
        elif isinstance(data, CameraFailed):
            outcome, cause = ("camera_refused", "") if data.reason == "refused" else (
                "failed", f"camera_{data.reason}")
            self._count((event.session_id, event.actor), outcome, cause)
        elif isinstance(data, ParticipantLeft) and data.role is Role.CUSTOMER:
            key = (event.session_id, data.participant_id)
            if data.reason == "replaced":
                self.pending.pop(key, None)
            else:
                self._count(key, "failed", data.reason)


class _Live(Collector):
    """The node's live sessions, their connected participants by role, and its session limit."""

    def __init__(self, hub: Hub, node: str) -> None:
        self.hub = hub
        self.node = node

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sessions = GaugeMetricFamily("visassist_live_sessions", "Sessions with a live room on this node",
                                     labels=["node"])
        sessions.add_metric([self.node], len(self.hub.rooms))
        yield sessions
        capacity = GaugeMetricFamily("visassist_max_live_sessions",
                                     "Live sessions this node takes (--max-live-sessions)", labels=["node"])
        capacity.add_metric([self.node], self.hub.limit)
        yield capacity
        by_role = dict.fromkeys((r.value for r in Role), 0)
        for room in list(self.hub.rooms.values()):
            for connection in room.connections():
                by_role[connection.participant.role.value] += 1
        participants = GaugeMetricFamily("visassist_participants",
                                         "Participants connected to this node's live sessions",
                                         labels=["node", "role"])
        for role, count in by_role.items():
            participants.add_metric([self.node, role], count)
        yield participants


class _Threads(Collector):
    """CPU time by thread group, from /proc (Linux): `loop` is the event loop's thread, which carries
    all media forwarding (ICE, DTLS, SRTP, RTP in aiortc) besides signalling and the API; `workers`
    decode pictures, compose snapshots and write files; `native` are threads libraries start
    themselves (codecs). Costs one small file read per thread per scrape."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.loop_thread: int | None = None  # set when the application starts
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _cpu(self, tid: int) -> float:
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            return 0.0
        return (int(fields[11]) + int(fields[12])) / self.ticks  # utime + stime

    def collect(self) -> Iterator[CounterMetricFamily]:
        if not os.path.isdir("/proc/self/task"):
            return
        python = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        groups = {"loop": 0.0, "workers": 0.0, "native": 0.0}
        for entry in os.listdir("/proc/self/task"):
            tid = int(entry)
            group = "loop" if tid == self.loop_thread else "workers" if tid in python else "native"
            groups[group] += self._cpu(tid)
        family = CounterMetricFamily("visassist_thread_cpu_seconds",
                                     "CPU time of this node's threads: loop (signalling and media "
                                     "forwarding), workers (pictures, snapshots), native (codecs)",
                                     labels=["node", "thread"])
        for group, seconds in groups.items():
            family.add_metric([self.node, group], seconds)
        yield family


class Metrics:
    """One registry per application (tests run several in one process)."""

    def __init__(self, settings: Settings, hub: Hub) -> None:
        self.settings = settings
        self.node = node_id(settings)  # as among the nodes: --node-id, else host:port
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, open files
        self.joins = Counter("visassist_joins", "Customer joins by outcome (connected, camera_refused, "
                             "failed) and cause", ["node", "outcome", "cause", "rejoin"],
                             registry=self.registry)
        self.first_frame = Histogram("visassist_join_first_frame_seconds",
                                     "From a customer's join to their first video frame at the server",
                                     ["node"], buckets=FIRST_FRAME_BUCKETS, registry=self.registry)
        self.snapshot = Histogram("visassist_snapshot_seconds",
                                  "From a snapshot request to the stored snapshot (capture, drawing, "
                                  "storing)", ["node", "source"], buckets=SNAPSHOT_BUCKETS,
                                  registry=self.registry)
        self.webhook_attempts = Counter("visassist_webhook_attempts", "Webhook delivery attempts by result",
                                        ["node", "result"], registry=self.registry)
        self.refused = Counter("visassist_sockets_refused", "Signalling sockets refused before joining, "
                               "by error code", ["node", "code"], registry=self.registry)
        self.backlog_pending = _gauge("visassist_webhook_backlog", "Webhook deliveries waiting to be "
                                      "sent or retried (all nodes' outbox)", self.registry)
        self.backlog_age = _gauge("visassist_webhook_backlog_oldest_seconds",
                                  "Age of the oldest waiting webhook delivery", self.registry)
        self.backlog_failed = _gauge("visassist_webhook_deliveries_failed",
                                     "Webhook deliveries given up on after their retries", self.registry)
        self.threads = _Threads(self.node)
        self.registry.register(_Live(hub, self.node))
        self.registry.register(self.threads)
        self.join_outcomes = JoinOutcomes(self.joins, self.first_frame, self.node)

    def attempted(self, error: str | None) -> None:
        """The webhook dispatcher's report of one attempt."""
        self.webhook_attempts.labels(self.node, "failed" if error else "delivered").inc()

    async def render(self, store: OutboxStore) -> bytes:
        backlog = await store.webhook_backlog()
        self.backlog_pending.labels(self.node).set(backlog.pending)
        self.backlog_failed.labels(self.node).set(backlog.failed)
        oldest = backlog.oldest_pending_at
        age = 0.0 if oldest is None else (utcnow() - oldest).total_seconds()
        self.backlog_age.labels(self.node).set(max(0.0, age))
        return generate_latest(self.registry)


def _gauge(name: str, documentation: str, registry: CollectorRegistry) -> Gauge:
    return Gauge(name, documentation, ["node"], registry=registry)


def _loopback(request: web.Request) -> bool:
    peer = request.remote or ""
    try:
        direct = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        direct = False
    # Behind a proxy on the same host every request comes from loopback: a forwarded one is not local.
    return direct and "X-Forwarded-For" not in request.headers and "Forwarded" not in request.headers


def allowed(request: web.Request, token: str | None) -> None:
    """With `--metrics-token`: that bearer token, from anywhere. Without: local, unproxied requests only."""
    if token is None:
        if not _loopback(request):
            raise ClientError(ApiErrorCode.FORBIDDEN, "metrics are served to this host only; set "
                              "--metrics-token to scrape from elsewhere", status=403)
        return
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise ClientError(ApiErrorCode.UNAUTHORIZED, "send the metrics token as a bearer token", status=401)


routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    from visassist.context import AppContext  # here: the context holds this module's Metrics

    ctx = request.app[AppContext.KEY]
    try:
        allowed(request, ctx.settings.metrics_token)
    except ClientError as exc:
        response = web.json_response(exc.body(), status=exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="visassist metrics"'
        return response
    body = await ctx.metrics.render(ctx.store)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
