"""One log line per entrypoint call, and the correlation id that ties a chain of them together.

``EntrypointLog`` (every service has it through ``ServiceBase``) writes to the
``linli.entrypoints`` logger when a worker ends: service, entrypoint, kind
(http, message, rpc, timer, ingest), correlation id, outcome (ok, refused: the
caller's mistake, error: ours), duration, and the message type or the HTTP
method, route and status. A batch of messages gets a line per message, each
with its own correlation id. Only ids and categories: the route template
(``/residents/<resident_id>``), never the path's query, a body or an
exception's text. Probes (/health, /ready, /metrics) log at DEBUG.

A correlation id comes from the ``X-Correlation-Id`` header (or is made up),
rides in ``worker_ctx.context_data`` into RPC headers, envelopes and the
outbox, and back out of every handler of those messages. Timers start a chain
of their own, under their call id.

The JSON is the process's logging config: ``LOGGING`` in each service's
config.yaml (python-json-logger's ``JsonFormatter``), applied by ``nameko run``.
"""
from __future__ import annotations

import logging
import re
import time
import uuid

from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.timer import Timer
from nameko.web.handlers import HttpRequestHandler
from werkzeug.wrappers import Response

from services.common.correlation import CORRELATION_KEY

CORRELATION_HEADER = "X-Correlation-Id"
PROBE_ROUTES = frozenset({"/health", "/ready", "/metrics"})
# A caller's id is kept only if it is a plain token, so a header can't smuggle text into the logs.
_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
log = logging.getLogger("linli.entrypoints")


def correlation_id_from(header_value: str | None) -> str:
    """The caller's correlation id if it is a plain token of at most 128 characters, else a new one."""
    if header_value and _PLAIN_TOKEN.fullmatch(header_value):
        return header_value
    return str(uuid.uuid4())


def log_call(*, service: str, entrypoint: str, kind: str, correlation_id: str, outcome: str,
             duration_s: float, level: int = logging.INFO, **fields) -> None:
    """Write one entrypoint line; ``fields`` are ids and categories only."""
    if level == logging.INFO and outcome == "error":
        level = logging.WARNING
    log.log(level, "%s %s %s", kind, entrypoint, outcome, extra={
        "service": service, "entrypoint": entrypoint, "kind": kind, "correlation_id": correlation_id,
        "outcome": outcome, "duration_ms": round(duration_s * 1000, 1),
        **{key: value for key, value in fields.items() if value is not None}})


def http_outcome(status: int) -> str:
    return "ok" if status < 400 else "refused" if status < 500 else "error"


class EntrypointLog(DependencyProvider):
    """Logs every worker of the service when it ends (see the module docstring)."""

    def setup(self):
        self._started = {}
        if "LOGGING" in self.container.config:  # this process's logging is the service's (`nameko run`):
            logging.captureWarnings(True)  # a warning is then a log line like any other, in the same format

    def worker_setup(self, worker_ctx):
        # A chain that starts here (a timer, a caller without one) is known by this worker's call id,
        # as the outbox already names the envelopes it publishes.
        worker_ctx.data.setdefault(CORRELATION_KEY, worker_ctx.call_id)  # (context_data is a copy of data)
        self._started[worker_ctx] = time.monotonic()

    def worker_teardown(self, worker_ctx):
        self._started.pop(worker_ctx, None)

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self._started.pop(worker_ctx, None)
        entrypoint = worker_ctx.entrypoint
        common = {
            "service": self.container.service_name,
            "entrypoint": f"{self.container.service_name}.{entrypoint.method_name}",
            "kind": _kind(entrypoint),
            "duration_s": time.monotonic() - started if started is not None else 0.0,
        }
        error = exc_info[1] if exc_info else None
        outcome = _outcome(entrypoint, error)
        error_type = type(error).__name__ if error is not None else None
        correlation_id = worker_ctx.context_data.get(CORRELATION_KEY)
        if common["kind"] == "http":
            self._log_http(worker_ctx, result, common, correlation_id, error_type, outcome)
        elif common["kind"] == "message":
            envelopes = worker_ctx.args[0]
            for envelope in envelopes:
                log_call(**common, correlation_id=envelope.correlationid or envelope.id, outcome=outcome,
                         message_type=envelope.type, message_id=envelope.id, batch_size=len(envelopes),
                         error_type=error_type)
        else:
            envelope = worker_ctx.args[0] if worker_ctx.args else None
            log_call(**common, correlation_id=correlation_id, outcome=outcome, error_type=error_type,
                     message_type=getattr(envelope, "type", None), message_id=getattr(envelope, "id", None))

    def _log_http(self, worker_ctx, result, common, correlation_id, error_type, outcome):
        request, route = worker_ctx.args[0], worker_ctx.entrypoint.url
        status = result.status_code if isinstance(result, Response) else None
        log_call(**common, correlation_id=correlation_id,
                 outcome=http_outcome(status) if status is not None else outcome,
                 level=logging.DEBUG if route in PROBE_ROUTES else logging.INFO,
                 method=request.method, route=route, status=status, error_type=error_type)


def _kind(entrypoint) -> str:
    for cls, kind in ((HttpRequestHandler, "http"), (EventHandler, "message"), (Rpc, "rpc"), (Timer, "timer")):
        if isinstance(entrypoint, cls):
            return kind
    return getattr(entrypoint, "log_kind", type(entrypoint).__name__)


def _outcome(entrypoint, error) -> str:
    if error is None:
        return "ok"
    return "refused" if isinstance(error, entrypoint.expected_exceptions) else "error"
