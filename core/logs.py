"""Structured logging: one JSON (or text) line per record, with credentials redacted.

    configure_logging(level="info", fmt="json")
    log = get_logger(__name__)
    log.info("device enrolled", extra={"device_id": "d-42", "stream": "EVENTS"})
    -> {"ts": "2025-01-01T00:00:00.000Z", "level": "info", "logger": "edge.agent",
        "msg": "device enrolled", "device_id": "d-42", "stream": "EVENTS"}

Structured fields travel in the standard `extra=` dict: every LogRecord attribute that
the standard library does not define becomes a field. `RedactionFilter` sits on the
handler, so every record that reaches it (ours, nats-py's, uvicorn's) is redacted before
formatting: the message after `msg % args`, every extra field, the exception and stack
text. The record is rewritten in place, so handlers that run after ours see the redacted
version too.

Named `logs`, not `logging`, so that `from core import logging` can never be mistaken
for the standard library module.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import traceback
from typing import Any, Final, Literal, TextIO

from core.redaction import redact, redact_value

__all__ = ["JsonFormatter", "RedactionFilter", "TextFormatter", "configure_logging", "get_logger"]

LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD_ATTRS: Final = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
# uvicorn sends a colourised copy of its message as an extra; it is noise in a log file.
_DROPPED_EXTRAS: Final = frozenset({"color_message"})
_RESERVED: Final = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRS and key not in _DROPPED_EXTRAS
    }


class RedactionFilter(logging.Filter):
    """Rewrite a record so that nothing it carries can leak a credential.

    The message is formatted once (`msg % args`), redacted, and stored back with the
    args removed, so a secret passed as an argument is caught and a `__str__` with side
    effects runs once. Extra fields go through `redact_value` (secret-looking field
    names lose their whole value). The exception is formatted into `exc_text`, redacted,
    and `exc_info` cleared, so no formatter can render the raw traceback later. Never
    rejects a record and never raises: if redaction itself failed, the record's content is
    replaced by a placeholder. Running it twice on a record is harmless.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            _redact_record(record)
        except Exception:  # never let a log call fail, never let an unredacted field through
            for key in _extras(record):
                delattr(record, key)
            record.msg, record.args = "[REDACTED:unredactable log record]", None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # bad format string or args: keep both, visibly
        message = f"{record.msg!r} % {record.args!r}"
    record.msg = redact(message)
    record.args = None
    record.name = redact(record.name)
    extras = _extras(record)
    for key in extras:
        delattr(record, key)
    for key, value in redact_value(extras).items():  # a key may itself change under redaction
        setattr(record, key, value)
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = _format_exception(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    record.exc_info = None
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


# The formatters redact too (again: it is idempotent and cheap), so one of them put on a
# handler without the filter still never writes a secret.
_SAFETY_NET: Final = RedactionFilter()


def _format_exception(exc_info: Any) -> str:
    try:
        return "".join(traceback.format_exception(*exc_info)).rstrip("\n")
    except Exception:
        return "<exception could not be formatted>"


def _timestamp(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the extra fields, exc, stack.

    An extra field named like one of ours is written as `extra_<name>`. Values that JSON
    cannot hold are written as their `str()`. Redacts the record itself as well, in case
    it is used on a handler without a RedactionFilter.
    """

    def format(self, record: logging.LogRecord) -> str:
        _SAFETY_NET.filter(record)
        payload: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            payload[f"extra_{key}" if key in _RESERVED else key] = value
        if record.exc_text:
            payload["exc"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        try:
            return json.dumps(payload, ensure_ascii=False, default=str, allow_nan=False)
        except (TypeError, ValueError):  # e.g. a tuple as a dict key, a circular list
            return json.dumps({k: v if isinstance(v, str) else str(v) for k, v in payload.items()})


class TextFormatter(logging.Formatter):
    """`<ts> <LEVEL> <logger>: <msg> key=value ...`, then the traceback, for humans; redacts too."""

    def format(self, record: logging.LogRecord) -> str:
        _SAFETY_NET.filter(record)
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = " ".join(f"{key}={value!r}" for key, value in _extras(record).items())
        if fields:
            line = f"{line} {fields}"
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{record.stack_info}"
        return line


class _Handler(logging.StreamHandler[TextIO]):
    """The one handler `configure_logging` installs; its class marks it as ours."""


def configure_logging(
    *, level: str = "info", fmt: Literal["json", "text"] = "json", stream: TextIO | None = None
) -> None:
    """Send every log record to `stream` (default stderr) as redacted JSON or text lines.

    Sets the root logger's level and installs one handler carrying a `RedactionFilter`,
    first among the root logger's handlers. Calling it again replaces that handler (no
    duplicate lines); handlers that others put on the root logger (a test runner's) are
    left in place, after ours, and see redacted records. Handlers attached to non-root
    loggers run before the root's and are not covered: do not add any.

    Raises ValueError for a level other than debug/info/warning/error/critical or a
    format other than json/text.
    """
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}; use json or text")
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    # First in line: the filter rewrites the record in place, so handlers that others
    # put on the root logger (a test runner's) only ever see the redacted record.
    root.handlers.insert(0, handler)
    root.setLevel(LEVELS[level.lower()])
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _SslEofNoise) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_SslEofNoise())


class _SslEofNoise(logging.Filter):
    """Drops asyncio's warning that nats-py's protocol returns True from eof_received() on a TLS
    connection: it comes with every clean close of a TLS connection and means nothing for us."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("returning true from eof_received()")


def get_logger(name: str) -> logging.Logger:
    """Return the standard library logger `name`; a place to hang conventions later."""
    return logging.getLogger(name)
