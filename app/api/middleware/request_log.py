"""Structured request logs: one JSON line per request, with a request id.

The id comes from a well-formed `X-Request-ID` header or is generated
(`app.api.middleware.access` puts it back into the request and the response headers). A log line
carries the request id, method, route template, status, latency and model version, and
nothing from the request itself: no path parameters, query string, headers, client
address, file name or image bytes.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

ACCESS_LOGGER = "cxr.api.access"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HANDLER_MARK = "_cxr_handler"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            "pid": record.process,  # which worker process, when `python -m app.api` runs several
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["traceback"] = self.formatException(record.exc_info)  # server side only, never in a response
        return json.dumps(entry, default=str)


def configure_logging(level: int, fmt: str) -> None:
    """Give the `cxr` loggers one stderr handler (replacing ours from an earlier call).

    With JSON logs, our request lines replace uvicorn's access log, which would add the
    client address and the raw query string to every line.
    """
    logging.getLogger("uvicorn.access").disabled = fmt == "json"
    logger = logging.getLogger("cxr")
    for handler in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(fields)s", defaults={"fields": ""}))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def server_log_config(fmt: str) -> dict[str, Any]:
    """`logging.config` for the HTTP server's own lines (granian's `_granian` logger: start,
    workers, shutdown) in the same format as ours, on stderr. The server's access log stays
    off: `log_request` writes ours."""
    formatter: dict[str, Any] = {"()": JsonFormatter} if fmt == "json" else {
        "format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    return {
        "formatters": {"cxr": formatter},
        "handlers": {"cxr": {"class": "logging.StreamHandler", "formatter": "cxr", "stream": "ext://sys.stderr"}},
        "loggers": {"_granian": {"handlers": ["cxr"], "propagate": False}},
    }


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _REQUEST_ID.fullmatch(text) else None  # no log injection through the id
    return None


def log_request(fields: dict[str, Any]) -> None:
    """Write one access line; `fields` must hold only the non-identifying fields above."""
    logging.getLogger(ACCESS_LOGGER).info("request", extra={"fields": fields})
