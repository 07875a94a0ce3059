"""Log setup: one JSON object per line in production, readable lines in development.

Every record carries the fields that say what it is about:

- ``node`` and ``role``: this process's node (:func:`set_node`, called once at start);
- ``room``, ``participant`` (identity) and ``participant_sid``: bound for the code that
  works for one participant or room with :func:`bind` (a context variable, so a task and
  the tasks it starts carry them), or given per call as ``extra={"room": ...}``.

JSON lines: ``{"ts", "level", "logger", "msg", "node", "role", "room", "participant",
"participant_sid", "error"}`` (fields without a value are left out). Readable lines end
with the same fields as ``[room=... participant=...]``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
CONTEXT_FIELDS = ("room", "participant", "participant_sid")
FIELDS = ("node", "role", *CONTEXT_FIELDS)

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("trackyard_log_context", default={})
_process: dict[str, str] = {}


def set_node(node_id: str, role: str) -> None:
    """The node every record of this process names."""
    _process.update(node=node_id, role=role)


def bind(**fields: str) -> None:
    """Add ``room``, ``participant`` and/or ``participant_sid`` to every record logged from
    the current context (this task, and tasks it starts from now on)."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log fields {sorted(unknown)}")
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})


class ContextFilter(logging.Filter):
    """Sets the fields on each record (an ``extra`` given to the call wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for source in (_context.get(), _process):
            for key, value in source.items():
                if getattr(record, key, None) in (None, ""):
                    setattr(record, key, value)
        return True


def record_fields(record: logging.LogRecord) -> dict[str, str]:
    return {key: str(value) for key in FIELDS if (value := getattr(record, key, None)) not in (None, "")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **record_fields(record),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class ReadableFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in record_fields(record).items() if k not in ("node", "role")}
        if not fields:
            return line
        head, sep, rest = line.partition("\n")  # fields go on the message line, before a traceback
        return head + " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]" + sep + rest


def make_handler(stream, *, json_lines: bool) -> logging.Handler:
    """A handler writing JSON or readable lines, with the context fields, to ``stream``."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else ReadableFormatter())
    handler.addFilter(ContextFilter())
    return handler


def setup_logging(level: str, *, json_lines: bool) -> None:
    handler = make_handler(sys.stderr, json_lines=json_lines)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # third-party libraries stay at INFO even in debug mode
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.INFO))
