"""Is this instance ready for work? What ``GET /ready`` answers.

Ready means: the broker answers, every MongoDB the service uses answers a
ping, and every queue this service consumes has this instance's consumer on
an open channel (read from nameko's own consumer extensions, not inferred
from the queue: with several instances another one's consumer would count).
The answer is cached for ``CACHE_S`` so a probe storm costs one check.
"""
from __future__ import annotations

import time

import pymongo
from eventlet.semaphore import Semaphore
from kombu import Connection
from nameko.extensions import DependencyProvider
from nameko.messaging import QueueConsumer

from services.common.mongo import MongoDatabase

CACHE_S = 1.0
CHECK_TIMEOUT_S = 1.0


class Readiness(DependencyProvider):
    """Injects ``check() -> (ready, {"broker": ..., "database": ..., "consumers": ...})``."""

    def setup(self):
        self._lock = Semaphore()
        self._answer = None
        self._checked_at = float("-inf")

    def get_dependency(self, worker_ctx):
        return self.check

    def check(self) -> tuple[bool, dict]:
        with self._lock:  # concurrent probes wait for one check and share it
            if time.monotonic() - self._checked_at > CACHE_S:
                checks = {"broker": self._broker(), "database": self._database(), "consumers": self._consumers()}
                self._answer = (all(value == "ok" for value in checks.values()), checks)
                self._checked_at = time.monotonic()
            return self._answer

    def _broker(self) -> str:
        try:
            with Connection(self.container.config["AMQP_URI"], connect_timeout=CHECK_TIMEOUT_S) as connection:
                connection.connect()
        except Exception as exc:  # noqa: BLE001 - whatever the reason, the answer is "not reachable"
            return f"unreachable: {type(exc).__name__}"
        return "ok"

    def _database(self) -> str:
        databases = [d for d in self.container.dependencies if isinstance(d, MongoDatabase)]
        for database in databases:
            if database.client is None:
                return f"{database.name}: not connected"
            try:
                with pymongo.timeout(CHECK_TIMEOUT_S):
                    database.client.admin.command("ping")
            except Exception as exc:  # noqa: BLE001
                return f"{database.name}: unreachable: {type(exc).__name__}"
        return "ok"

    def _consumers(self) -> str:
        missing = []
        for queue_consumer in (e for e in self.container.extensions if isinstance(e, QueueConsumer)):
            for provider in list(queue_consumer._providers):
                consumer = queue_consumer._consumers.get(provider)
                if consumer is None or not _channel_open(consumer.channel):
                    missing.append(provider.queue.name)
        for entrypoint in self.container.entrypoints:
            # Consumers with a connection of their own (the ingest door) say whether they consume.
            if getattr(entrypoint, "consuming", True) is False:
                missing.append(entrypoint.queue.name)
        return "ok" if not missing else "not attached: " + ", ".join(sorted(missing))


def _channel_open(channel) -> bool:
    connection = getattr(channel, "connection", None)
    return bool(getattr(channel, "is_open", False) and connection is not None and connection.connected)
