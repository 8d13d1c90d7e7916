"""nameko extensions of the ingest door (see ``services.common.ingest`` for the checks and guarantees).

``ingest_handler(message_type)`` decorates ``method(self, envelope) -> dict``
(``{"outcome": ..., "resident_id" | "event_id": ...}``): one worker per
message; a method that raises ``IngestRejected`` (a business rule) has the
message parked like a malformed one. With ``batch=True``, ``method(self, envelopes)``
gets what has arrived (up to ``max_batch``, within ``max_wait_s``) and returns one
result or ``IngestRejected`` per envelope; a batch that fails as a whole is tried
again one message at a time. A message whose handling fails for any
other reason is requeued once, then parked as ``processing_failed``.

``unrouted_gate()`` parks whatever reaches ``linli.ingest.unrouted``.
``IngestDoor`` is the HTTP door: the same checks, then the message is
published to ``linli.ingest`` with confirms for the same consumers.
"""
from __future__ import annotations

import logging
import socket
from functools import partial

import eventlet
from kombu import Connection, Consumer
from nameko.amqp.publish import Publisher
from nameko.exceptions import ContainerBeingKilled
from nameko.extensions import DependencyProvider, Entrypoint

from contracts import INGEST_ACCEPTED, MessageType, build_envelope
from contracts.ingest import MAX_INGEST_BYTES
from services.common.ingest import (
    INGEST_EXCHANGE, INGEST_MESSAGES, PERSISTENT, UNROUTED_QUEUE, IngestRejected, Rejections, check_body,
    declare_topology, declared, error, queue_for, type_label,
)
from services.common.correlation import CORRELATION_KEY
from services.common.web import ApiError

log = logging.getLogger(__name__)
RECONNECT_DELAY_S = 1.0


class IngestConsumer(Entrypoint):
    """Consumes raw ingest messages from one queue in a thread of its own (see the module docstring)."""

    log_kind = "ingest"  # in the entrypoint log lines

    def __init__(self, message_type: MessageType | None, batch: bool = False, max_batch: int = 100,
                 max_wait_s: float = 0.02, prefetch_count: int | None = None, **kwargs):
        self.message_type = message_type
        self.batch = batch
        self.max_batch = max_batch if batch else 1
        self.max_wait_s = max_wait_s
        self.prefetch_count = prefetch_count or (2 * self.max_batch if batch else 20)
        kwargs.setdefault("expected_exceptions", (IngestRejected,))  # a warning, not an error, in the log
        super().__init__(**kwargs)

    def setup(self):
        service = self.container.service_name
        self.amqp_uri = self.container.config["AMQP_URI"]
        self.queue = queue_for(service, self.message_type) if self.message_type else UNROUTED_QUEUE
        declare_topology(self.amqp_uri, self.queue)
        self.rejections = Rejections(self.amqp_uri, service)
        self.replies = Publisher(self.amqp_uri, use_confirms=True, serializer="json")
        self._stopping = False
        self._thread = None
        self._pending: list[tuple] = []  # (message, envelope) checked, not yet handed to a worker
        self._flush_timer = None
        self.consuming = False  # /ready asks
        probe = Connection(self.amqp_uri)
        self._broker_errors = (OSError, *probe.connection_errors, *probe.channel_errors)

    def start(self):
        self._thread = self.container.spawn_managed_thread(self._consume, identifier=f"ingest:{self.queue.name}")

    def stop(self):
        self._stopping = True
        if self._thread is not None:
            self._thread.wait()

    def kill(self):
        self._stopping = True
        if self._thread is not None:
            self._thread.kill()

    def _consume(self):
        while not self._stopping:
            try:
                with Connection(self.amqp_uri, heartbeat=60) as connection:
                    channel = connection.channel()
                    with Consumer(channel, queues=[self.queue], on_message=self._on_message, no_ack=False,
                                  prefetch_count=self.prefetch_count):
                        self.consuming = True
                        while not self._stopping:
                            try:
                                connection.drain_events(timeout=0.5)
                            except socket.timeout:
                                connection.heartbeat_check()
            except self._broker_errors as exc:
                self.consuming = False
                log.warning("ingest consumer of %s lost the broker (%s); reconnecting",
                            self.queue.name, type(exc).__name__)
                eventlet.sleep(RECONNECT_DELAY_S)
            finally:
                self._drop_pending()  # unacked: the broker gives them back with the connection

    def _on_message(self, message):
        if not isinstance(message.body, bytes):  # py-amqp hands over an empty body as '' (str)
            message.body = message.body.encode()
        routing_key = message.delivery_info.get("routing_key")
        try:
            envelope = check_body(message.body, message.content_type, routing_key)
            if self.message_type is None:
                raise IngestRejected([error("unrouted", "type", f"no Linli service consumes {envelope.type!r}")])
        except IngestRejected as rejected:
            if self.message_type is None and "unrouted" not in rejected.codes:
                rejected.errors.append(error("unrouted", None, f"no Linli service consumes routing key "
                                                               f"{(routing_key or '')[:100]!r}"))
            return self._park(message, rejected)
        except Exception as exc:  # noqa: BLE001 - a check that fails unforeseen must park the message, not kill us
            log.error("ingest: checking a message on %s failed (%s); parked", self.queue.name, type(exc).__name__)
            return self._park(message, IngestRejected([error("processing_failed", None,
                                                             f"the message could not be checked ({type(exc).__name__})")]))
        self._pending.append((message, envelope))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = eventlet.spawn_after(self.max_wait_s, self._flush)

    def _flush(self):
        if self._flush_timer is not None:
            self._flush_timer.cancel()  # a no-op when the timer itself is flushing
            self._flush_timer = None
        batch, self._pending = self._pending, []
        if batch and not self._stopping:
            self._spawn(batch)

    def _drop_pending(self):
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._pending = []

    def _spawn(self, batch: list[tuple]):
        """One worker for the batch: ``method(self, envelopes) -> [result | IngestRejected, ...]`` for a
        batch handler, ``method(self, envelope) -> result`` otherwise."""
        message, envelope = batch[0]
        context = {CORRELATION_KEY: message.properties.get("correlation_id") or envelope.correlationid or envelope.id}
        args = ([e for _, e in batch],) if self.batch else (envelope,)
        try:
            self.container.spawn_worker(self, args, {}, context_data=context,
                                        handle_result=partial(self._processed, batch))
        except ContainerBeingKilled:
            for message, _ in batch:
                message.requeue()

    def _processed(self, batch, worker_ctx, result=None, exc_info=None):
        if exc_info is None:
            outcomes = result if self.batch else [result]
            for (message, envelope), outcome in zip(batch, outcomes):
                self._settle(message, envelope, outcome, None)
        elif len(batch) > 1 and not isinstance(exc_info[1], IngestRejected):
            # Find the message that fails: each on its own, outside this worker.
            self.container.spawn_managed_thread(lambda: [self._spawn([item]) for item in batch])
        else:
            for message, envelope in batch:
                self._settle(message, envelope, None, exc_info[1])
        return result, exc_info

    def _settle(self, message, envelope, outcome, failure):
        """Reply, count and ack a message handled; park one rejected; requeue a failure once, then park it."""
        if isinstance(outcome, IngestRejected):
            outcome, failure = None, outcome
        try:
            if failure is None:
                self._reply(message, envelope, outcome)
                INGEST_MESSAGES.labels(self.container.service_name, envelope.type, outcome["outcome"]).inc()
                message.ack()
            elif isinstance(failure, IngestRejected):
                self._park(message, failure)
            elif not message.delivery_info.get("redelivered"):
                log.warning("ingest %s failed (%s); requeued once", envelope.type, type(failure).__name__)
                message.requeue()
            else:
                self._park(message, IngestRejected([error("processing_failed", None, f"{type(failure).__name__} "
                                                          "twice; the message is kept for replay")]))
        except Exception as exc:  # noqa: BLE001 - the broker failed us: leave the message to be redelivered
            log.error("ingest %s: could not settle the message (%s); left for redelivery", envelope.type,
                      type(exc).__name__)
            try:
                message.requeue()
            except Exception:  # noqa: BLE001 - a lost channel returns its unacked messages anyway
                pass

    def _park(self, message, rejected: IngestRejected):
        self.rejections.park(message.body, message.properties, message.delivery_info, rejected)
        label = self.message_type.name if self.message_type else type_label(message.delivery_info.get("routing_key"))
        INGEST_MESSAGES.labels(self.container.service_name, label, "rejected").inc()
        message.ack()

    def _reply(self, message, envelope, result: dict):
        reply_to = message.properties.get("reply_to")
        if not reply_to:
            return
        correlation_id = message.properties.get("correlation_id")
        reply = build_envelope(INGEST_ACCEPTED.name, {"ingested_id": envelope.id, "type": envelope.type, **result},
                               source=f"linli/{self.container.service_name}", community=envelope.community,
                               correlationid=correlation_id or envelope.id)
        self.replies.publish(reply.to_wire(), exchange="", routing_key=reply_to,
                             correlation_id=correlation_id or envelope.id)


def ingest_handler(message_type: MessageType, *, batch: bool = False, **kwargs):
    """Consume ``message_type`` from ``linli.ingest`` on ``linli-<service>.ingest.<type>``. With ``batch=True``
    the method takes up to ``max_batch`` envelopes at once and returns, for each, its result or the
    ``IngestRejected`` that parks it (``services.common.ingest.once_each`` records them in one transaction)."""
    return IngestConsumer.decorator(message_type, batch=batch, **kwargs)


def unrouted_gate(**kwargs):
    """Park every message that reached ``linli.ingest`` with a routing key no service binds."""
    return IngestConsumer.decorator(None, **kwargs)


class IngestRefused(ApiError):
    def __init__(self, rejected: IngestRejected):
        code = {413: "body_too_large", 415: "unsupported_content_type"}.get(rejected.status, "invalid_message")
        super().__init__(f"the message is refused: {rejected}"[:2000], {"errors": rejected.errors}, code=code)
        self.status = rejected.status


class IngestDoor(DependencyProvider):
    """``accept(request) -> (202, {"id", "status"})`` for systems without AMQP, or ``IngestRefused``."""

    def setup(self):
        self.service = self.container.service_name
        amqp_uri = self.container.config["AMQP_URI"]
        declare_topology(amqp_uri)
        self.publisher = Publisher(amqp_uri, use_confirms=True, mandatory=True, delivery_mode=PERSISTENT)

    def get_dependency(self, worker_ctx):
        return partial(self.accept, correlation_id=worker_ctx.context_data.get(CORRELATION_KEY))

    def accept(self, request, correlation_id: str | None = None):
        content_type = request.headers.get("Content-Type")
        try:
            if (request.content_length or 0) > MAX_INGEST_BYTES:
                raise IngestRejected([error("body_too_large", None, f"the body is {request.content_length} bytes; "
                                                                    f"the limit is {MAX_INGEST_BYTES}")], 413)
            envelope = check_body(request.get_data(), content_type)
        except IngestRejected as rejected:
            label = type_label(declared(request.get_data(), "type")) if rejected.status != 413 else "unknown"
            INGEST_MESSAGES.labels(self.service, label, "rejected").inc()
            raise IngestRefused(rejected) from None
        request.principal.require_community(envelope.data["community_id"])
        self.publisher.publish(request.get_data(), exchange=INGEST_EXCHANGE, routing_key=envelope.type,
                               content_type=content_type, content_encoding="binary",
                               message_id=envelope.id, app_id=f"http:{request.principal.subject}"[:200],
                               correlation_id=correlation_id, headers={"x-linli-received-over": "http"})
        INGEST_MESSAGES.labels(self.service, envelope.type, "forwarded_http").inc()
        return 202, {"id": envelope.id, "status": "accepted"}
