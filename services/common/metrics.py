"""Prometheus metrics shared by every service, and the dependency that records them.

Label values are bounded: service and entrypoint names, outcomes, message
types, queue names, communities. Never a resident id. Every metric is listed,
with what an operator does when it moves, in deploy/prometheus/METRICS.md.

Besides the counters bumped where things happen, each service reports, when
Prometheus scrapes it, what only the broker or the database knows: its queues'
depths and consumers (``QueueStats``), its outbox backlog, and whatever its own
modules register with ``scrape_time_metrics(service)``.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref

from nameko.extensions import DependencyProvider
from prometheus_client import (
    CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, disable_created_metrics, generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)
# ``*_created`` series double the series count and no dashboard or alert of ours reads them.
disable_created_metrics()

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
    "Messages parked in a dead-letter queue, by service and message type (unknown for a type no contract names).",
    ["service", "type"],
)

QUEUE_STATS_CACHE_S = 5.0
BROKER_TIMEOUT_S = 2.0


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric in this process, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


def message_type_label(type_name) -> str:
    """A bounded label for a message type read off the wire: a type the contracts name, else ``unknown``."""
    from contracts import registry

    return type_name if any(t.name == type_name for t in registry) else "unknown"


def _outcome(exc_info) -> str:
    if exc_info is None:
        return "success"
    # An error that carries a 4xx status is the caller's mistake, not ours.
    status = getattr(exc_info[1], "status", 500)
    return "rejected" if status < 500 else "error"


# -- what is read when Prometheus scrapes ----------------------------------------------------

_scrape_time: dict[str, list] = {}
_live: "weakref.WeakSet[EntrypointMetrics]" = weakref.WeakSet()
_registered = threading.Lock()
_collector = None


EVERY_SERVICE = "*"


def scrape_time_metrics(service: str):
    """Decorate ``fn(container) -> [metric families]``: called for every running container of
    ``service`` (``EVERY_SERVICE``: of every service) when Prometheus scrapes. It must return its
    families (maybe without samples) even when there is nothing to report, so the catalogue test
    sees every metric."""

    def register(fn):
        _scrape_time.setdefault(service, []).append(fn)
        return fn

    return register


class _ScrapeTimeCollector:
    """One per process: asks every running container's ``EntrypointMetrics`` what it reports."""

    def collect(self):
        families = []
        for provider in list(_live):
            families.extend(provider.scrape())
        return _merge(families)


def _merge(families):
    """Families of the same name from several containers (tests run several per process) as one."""
    merged = {}
    for family in families:
        if family.name in merged:
            merged[family.name].samples.extend(family.samples)
        else:
            merged[family.name] = family
    return list(merged.values())


class EntrypointMetrics(DependencyProvider):
    """Times every worker of the service and counts it by outcome; reports the service's
    queues, outbox backlog and scrape-time figures while the container runs."""

    def setup(self):
        global _collector
        self._started: dict[int, float] = {}
        self.queue_stats = QueueStats(self.container)
        with _registered:
            if _collector is None:
                _collector = _ScrapeTimeCollector()
                REGISTRY.register(_collector)

    def start(self):
        _live.add(self)

    def stop(self):
        _live.discard(self)

    kill = stop

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

    def scrape(self) -> list:
        families = []
        for fn in (lambda _: self.queue_stats.families(), *_scrape_time.get(EVERY_SERVICE, ()),
                   *_scrape_time.get(self.container.service_name, ())):
            try:
                families.extend(fn(self.container))
            except Exception as exc:  # noqa: BLE001 - one figure failing must not fail the whole scrape
                log.warning("metrics: %s failed: %s", fn.__qualname__, type(exc).__name__)
        return families


# -- the broker's view of the service's queues ------------------------------------------------

def queues_of(container) -> dict[str, str]:
    """The queues this service consumes from, and the queues holding its retries and dead
    letters: ``{name: kind}``, kind ``main`` | ``rpc`` | ``retry`` | ``dead_letter``.
    Reply queues of RPC proxies (a new name per process) are left out: unbounded names."""
    from kombu import Queue

    found = {}
    for extension in container.extensions:
        queue = getattr(extension, "queue", None)
        if isinstance(queue, Queue) and not queue.name.startswith("rpc.reply-"):
            found[queue.name] = "rpc" if queue.name.startswith("rpc-") else "main"
        for retry in getattr(extension, "retry_queues", None) or ():
            found[retry.name] = "retry"
        dead = getattr(extension, "dead_letter_queue", None)
        if isinstance(dead, Queue):
            found[dead.name] = "dead_letter"
    return found


class QueueStats:
    """Depth and consumers of the service's queues, by passive ``queue.declare`` (creates nothing),
    read at most every ``QUEUE_STATS_CACHE_S`` seconds whatever the scrape rate."""

    def __init__(self, container):
        self.container = container
        self._read_at = float("-inf")
        self._stats: dict[str, tuple[int, int]] = {}
        self._reachable = 0
        self._lock = threading.Lock()

    def families(self) -> list:
        with self._lock:
            if time.monotonic() - self._read_at > QUEUE_STATS_CACHE_S:
                self._refresh()
        service = self.container.service_name
        kinds = queues_of(self.container)
        messages = GaugeMetricFamily("linli_queue_messages", "Messages ready in the queue (not yet delivered).",
                                     labels=["service", "queue", "kind"])
        consumers = GaugeMetricFamily("linli_queue_consumers", "Consumers attached to the queue.",
                                      labels=["service", "queue", "kind"])
        dead = GaugeMetricFamily("linli_dead_letter_messages", "Messages parked in the dead-letter queue.",
                                 labels=["service", "queue"])
        reachable = GaugeMetricFamily("linli_broker_reachable",
                                      "1 if the last read of queue statistics from RabbitMQ succeeded, else 0.",
                                      labels=["service"])
        reachable.add_metric([service], self._reachable)
        for name, (ready, attached) in sorted(self._stats.items()):
            kind = kinds.get(name, "main")
            messages.add_metric([service, name, kind], ready)
            consumers.add_metric([service, name, kind], attached)
            if kind == "dead_letter":
                dead.add_metric([service, name], ready)
        return [messages, consumers, dead, reachable]

    def _refresh(self) -> None:
        from kombu import Connection

        self._read_at = time.monotonic()
        try:
            with Connection(self.container.config["AMQP_URI"], connect_timeout=BROKER_TIMEOUT_S) as connection:
                self._stats = _declare_passively(connection, queues_of(self.container))
            self._reachable = 1
        except Exception as exc:  # noqa: BLE001 - an unreachable broker is what this reports
            log.warning("metrics: reading queue statistics failed: %s", type(exc).__name__)
            self._stats, self._reachable = {}, 0


def _declare_passively(connection, names) -> dict[str, tuple[int, int]]:
    import amqp

    stats = {}
    channel = connection.channel()
    try:
        for name in names:
            try:
                _, ready, attached = channel.queue_declare(name, passive=True)
                stats[name] = (ready, attached)
            except amqp.exceptions.NotFound:
                channel = connection.channel()  # the broker closed the channel: not declared yet
    finally:
        try:
            channel.close()
        except Exception:  # noqa: BLE001 - a channel closed by the broker is fine
            pass
    return stats
