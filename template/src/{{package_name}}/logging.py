"""Structured logging: one JSON line per event on stdout, for our code, the stdlib and uvicorn alike.

structlog renders each event once; records from stdlib loggers (uvicorn, libraries) go through the same
processors via ``ProcessorFormatter``. Every line carries the request ID of the request it belongs to, and
values under secret-looking keys are redacted before rendering.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO, cast

import orjson
import structlog
from asgi_correlation_id import correlation_id
from structlog.typing import EventDict, Processor, WrappedLogger

from .settings import Settings

REDACTED = "[redacted]"
# A key naming any of these (db_password, access_token, X-API-Key...) never has its value logged.
SECRET_MARKERS = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "api-key",
    "apikey",
)
# uvicorn's own access log would duplicate ours (middleware/access_log.py).
# httpx logs every request at INFO; outbound calls are logged by the clients that make them.
_SILENCED_LOGGERS = {"uvicorn.access": logging.WARNING, "httpx": logging.WARNING}
_ALREADY_LOGGED = "_logged_with_traceback"
SECRET_KEY_CACHE_SIZE = 4096


def mark_logged(exc: BaseException) -> None:
    """Record that ``exc`` was logged with its traceback, so the server does not log it again."""
    setattr(exc, _ALREADY_LOGGED, True)


def _not_logged_before(record: logging.LogRecord) -> bool:
    # Starlette re-raises after our 500 handler ran; uvicorn would then log the same traceback twice.
    exc = record.exc_info[1] if record.exc_info else None
    return not getattr(exc, _ALREADY_LOGGED, False)


def add_request_id(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    request_id = correlation_id.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def _names_a_secret(key: str) -> bool:
    lowered = key.lower()
    if lowered.endswith("_id"):  # api_key_id, token_id: names of secrets, safe and useful to log
        return False
    return any(marker in lowered for marker in SECRET_MARKERS)


_SECRET_KEY_CACHE: dict[str, bool] = {}
_HARMLESS_KEYS: set[str] = set()  # the cache's keys judged not secret, for a set comparison per line
# Values of these types hold no keys, so a line made only of them needs no look inside.
_FLAT_TYPES = frozenset({str, int, float, bool, type(None)})


def is_secret_key(key: str) -> bool:
    # A plain dict, not functools.lru_cache: every key of every log line is looked up, and the dict
    # lookup is several times cheaper. Bounded: log keys are few, but a caller may log arbitrary dicts.
    secret = _SECRET_KEY_CACHE.get(key)
    if secret is None:
        if len(_SECRET_KEY_CACHE) >= SECRET_KEY_CACHE_SIZE:
            _SECRET_KEY_CACHE.clear()
            _HARMLESS_KEYS.clear()
        secret = _SECRET_KEY_CACHE[key] = _names_a_secret(key)
        if not secret:
            _HARMLESS_KEYS.add(key)
    return secret


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: REDACTED if is_secret_key(str(key)) else _redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


def redact_secrets(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # Runs for every line. The usual one (every key seen before and harmless, flat values) is recognised
    # by two comparisons done in C; only the others are walked key by key.
    if event.keys() <= _HARMLESS_KEYS and _FLAT_TYPES.issuperset(map(type, event.values())):
        return event
    known = _SECRET_KEY_CACHE  # the cache is read inline, not through a call
    for key, value in event.items():
        secret = known.get(key)
        if secret if secret is not None else is_secret_key(key):
            event[key] = REDACTED
        elif isinstance(value, (dict, list)):  # not tuples: exc_info is one, and must stay intact
            event[key] = _redacted(value)
    return event


class _CurrentStdout:
    """Writes to whatever ``sys.stdout`` is at the moment (test runners and supervisors swap it)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def drop_color_message(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # uvicorn passes an ANSI-coloured copy of its message as an `extra`; the plain one is enough.
    event.pop("color_message", None)
    return event


def _orjson_dumps(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=repr).decode()


class IsoTimestamp:
    """``timestamp``: UTC, ISO 8601 with microseconds (``2026-11-23T16:23:43.302374Z``).

    Hand-written where structlog's TimeStamper(fmt="iso", utc=True) gives the same text: that one builds
    and formats a datetime for every line; this formats each second once.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._second: tuple[int, str] = (-1, "")  # replaced whole, so threads never see half an update

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        now = self.clock()
        second = int(now)
        cached_second, prefix = self._second
        if second != cached_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, prefix)
        event["timestamp"] = f"{prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event


class RenderExceptions:
    """structlog's ``StackInfoRenderer`` and ``format_exc_info``, run only for a line that asks for them.

    Both look for a key (``stack_info``, ``exc_info``) that almost no line carries, the access log's never;
    checking for the key here first spares every other line their two calls.
    """

    def __init__(self) -> None:
        self.stack_info = structlog.processors.StackInfoRenderer()
        self.exc_info = structlog.processors.format_exc_info

    def __call__(self, logger: WrappedLogger, method_name: str, event: EventDict) -> EventDict:
        if "stack_info" in event:
            event = self.stack_info(logger, method_name, event)
        if "exc_info" in event:
            event = self.exc_info(logger, method_name, event)
        return event


class EventWriter:
    """Writes events built by the caller through the configured chain, as ``logger.info(...)`` would.

    Hand-written for the access log (one line per request): a bound logger's call copies its context and
    passes the keywords on through three calls before the chain runs, about a quarter of a line's cost.
    The chain, the output and the line are structlog's own; only that wrapping is skipped. Events below
    the configured level are dropped here, as the bound logger would drop them.
    """

    def __init__(self, processors: Sequence[Processor], output: TextIO, level: int) -> None:
        self.processors = tuple(processors)
        self.output = structlog.WriteLogger(output)  # its lock keeps lines from threads whole
        self.level = level

    def enabled(self, level: int) -> bool:
        return level >= self.level

    def __call__(self, method_name: str, event: EventDict) -> None:
        rendered: Any = event
        try:
            for processor in self.processors:
                rendered = processor(self.output, method_name, rendered)
        except structlog.DropEvent:
            return
        self.output.msg(rendered)


_writer: EventWriter | None = None


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        IsoTimestamp(),
        add_request_id,
        redact_secrets,
    ]


def _renderer(settings: Settings) -> Processor:
    if settings.effective_log_format == "human":
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer(serializer=_orjson_dumps)


def configure_logging(
    settings: Settings, stream: TextIO | None = None, extra_processors: Sequence[Processor] = ()
) -> None:
    """Route structlog and stdlib logging to ``stream`` (stdout by default) through one pipeline.

    ``extra_processors`` join the shared chain (e.g. trace IDs when tracing is on).
    """
    output: TextIO = stream if stream is not None else cast(TextIO, _CurrentStdout())
    level = logging.getLevelNamesMapping()[settings.log_level]
    shared = [*_shared_processors(), *extra_processors]
    renderer = _renderer(settings)

    processors: list[Processor] = [*shared, RenderExceptions(), renderer]
    global _writer  # noqa: PLW0603  # one configuration per process, like structlog's own
    _writer = EventWriter(processors, output, level)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=output),
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(output)
    handler.addFilter(_not_logged_before)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                drop_color_message,
                *shared,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
        named.setLevel(max(level, _SILENCED_LOGGERS.get(name, level)))


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to the current configuration (call after ``configure_logging``)."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name).bind(logger=name)
    return logger


def event_writer() -> EventWriter:
    """The writer for the current configuration (call after ``configure_logging``)."""
    if _writer is None:
        raise RuntimeError("configure_logging() has not been called")
    return _writer
