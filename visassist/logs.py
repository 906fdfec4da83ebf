"""Logging: plain text by default, or one JSON object per line (`--log-format json`) for a collector.

A log line about a participant's socket carries `session_id` and `participant_id` as fields: the
signalling handler binds them once per socket (`bind`), in a context variable that every log call
made on that socket's behalf, and every task it starts, sees; no call site passes them. JSON comes
from python-json-logger on the standard library's logging, so aiohttp's and aiortc's lines are JSON
too. (Measured against structlog by scripts/bench_logs.py: all within a few microseconds a line.)
"""

from __future__ import annotations

import contextvars
import logging

from pythonjsonlogger.json import JsonFormatter

from visassist.config import LogFormat

# Never mutated: bind() sets a new dict, so a task's ids never show up in another's lines.
_ids: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("visassist_log_ids",
                                                                              default=None)

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def bind(**ids: str) -> None:
    """Fields for every line logged from here on in this task (and the tasks it starts)."""
    _ids.set({**(_ids.get() or {}), **ids})


class ContextFields(logging.Filter):
    """Puts the bound ids on each record, where a JSON formatter turns them into fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_ids.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter("{asctime}{levelname}{name}{message}", style="{",
                         rename_fields={"asctime": "time", "levelname": "level", "name": "logger"})


def configure(level: str, form: LogFormat) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ContextFields())
    handler.setFormatter(json_formatter() if form == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # aioice and aiortc are chatty at INFO; their warnings still show.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
