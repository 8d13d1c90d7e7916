"""Prometheus metrics shared by every service, and the dependency that records them.

Label values are bounded: service and entrypoint names, outcomes, message
types. Never a resident id.
"""
from __future__ import annotations

import time

from nameko.extensions import DependencyProvider
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

ENTRYPOINT_CALLS = Counter(
    "linli_entrypoint_calls_total",
    "Entrypoint calls by service, entrypoint and outcome (success | rejected | error).",
    ["service", "entrypoint", "outcome"],
)
ENTRYPOINT_DURATION = Histogram(
    "linli_entrypoint_duration_seconds",
    "Entrypoint latency by service, entrypoint and outcome.",
    ["service", "entrypoint", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MESSAGES_PUBLISHED = Counter(
    "linli_messages_published_total",
    "Messages published, by service and message type.",
    ["service", "type"],
)
MESSAGES_CONSUMED = Counter(
    "linli_messages_consumed_total",
    "Messages consumed, by service, message type and outcome (processed | duplicate).",
    ["service", "type", "outcome"],
)
MESSAGES_RETRIED = Counter(
    "linli_messages_retried_total",
    "Messages whose handling failed and that were put back to be tried again after a delay.",
    ["service", "type"],
)
MESSAGES_DEAD_LETTERED = Counter(
    "linli_messages_dead_lettered_total",
    "Messages parked in a dead-letter queue, by service and message type.",
    ["service", "type"],
)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric in this process, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


def _outcome(exc_info) -> str:
    if exc_info is None:
        return "success"
    # An error that carries a 4xx status is the caller's mistake, not ours.
    status = getattr(exc_info[1], "status", 500)
    return "rejected" if status < 500 else "error"


class EntrypointMetrics(DependencyProvider):
    """Times every worker of the service and counts it by outcome."""

    def setup(self):
        self._started: dict[int, float] = {}

    def worker_setup(self, worker_ctx):
        self._started[id(worker_ctx)] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self._started.pop(id(worker_ctx), None)
        if started is None:
            return
        outcome = _outcome(exc_info)
        labels = (self.container.service_name, worker_ctx.entrypoint.method_name, outcome)
        ENTRYPOINT_CALLS.labels(*labels).inc()
        ENTRYPOINT_DURATION.labels(*labels).observe(time.perf_counter() - started)

    def worker_teardown(self, worker_ctx):
        self._started.pop(id(worker_ctx), None)
