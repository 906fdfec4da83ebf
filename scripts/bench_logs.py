"""What one log line costs: the standard library's logging (text, and JSON through python-json-logger,
as `--log-format json` does) beside structlog (its own loggers, and rendering standard-library
records). Each writes a join line with session_id and participant_id bound from a context variable,
to /dev/null; the figure is the median of several runs, in microseconds per line.

    .venv/bin/python scripts/bench_logs.py [--lines 50000] [--runs 7]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable

import structlog

from visassist import logs


def stdlib(formatter: logging.Formatter, lines: int) -> float:
    handler = logging.StreamHandler(open("/dev/null", "w"))  # noqa: SIM115 (kept for the run)
    handler.setFormatter(formatter)
    handler.addFilter(logs.ContextFields())
    log = logging.getLogger(f"bench.{id(formatter)}")
    log.handlers, log.propagate = [handler], False
    log.setLevel(logging.INFO)
    logs.bind(session_id="ses_8Jk2", participant_id="par_Q7x1")
    started = time.perf_counter()
    for _ in range(lines):
        log.info("%s %s joined session %s", "customer", "par_Q7x1", "ses_8Jk2")
    return (time.perf_counter() - started) / lines * 1e6


def structlog_native(lines: int) -> float:
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"), structlog.processors.JSONRenderer()],
        logger_factory=structlog.WriteLoggerFactory(open("/dev/null", "w")),  # noqa: SIM115
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO), cache_logger_on_first_use=True)
    structlog.contextvars.bind_contextvars(session_id="ses_8Jk2", participant_id="par_Q7x1")
    log = structlog.get_logger("bench")
    started = time.perf_counter()
    for _ in range(lines):
        log.info("participant joined", role="customer")
    return (time.perf_counter() - started) / lines * 1e6


def structlog_for_stdlib(lines: int) -> float:
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer()],
        foreign_pre_chain=[structlog.contextvars.merge_contextvars, structlog.stdlib.add_log_level,
                           structlog.stdlib.add_logger_name, structlog.processors.TimeStamper(fmt="iso")])
    structlog.contextvars.bind_contextvars(session_id="ses_8Jk2", participant_id="par_Q7x1")
    return stdlib(formatter, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    ways: dict[str, Callable[[int], float]] = {
        "stdlib text (default)": lambda n: stdlib(logging.Formatter(logs.TEXT), n),
        "stdlib + python-json-logger (--log-format json)": lambda n: stdlib(logs.json_formatter(), n),
        "structlog, its own loggers, JSON": structlog_native,
        "structlog rendering stdlib records, JSON": structlog_for_stdlib,
    }
    runs: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.runs):  # interleaved, so the machine's noise falls on all alike
        for name, way in ways.items():
            runs[name].append(way(args.lines))
    for name, figures in runs.items():
        print(f"{name:50s} {statistics.median(figures):6.2f} us/line  (min {min(figures):.2f})")


if __name__ == "__main__":
    main()
