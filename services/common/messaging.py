"""Handling contract messages on nameko's events machinery (services publish through
``services.common.outbox``, which validates against the contract before anything is stored).

``message_handler(message_type)`` decorates a service method
that receives an ``Envelope``. It refuses envelopes that break the contract,
runs the method exactly once per envelope ``id`` (the effect and the
"processed" record commit together, see ``mongo.Database.exactly_once``), and
parks any message whose handling fails in a dead-letter queue with the error,
where nameko would have acked it away.

``services.common.multi_source`` has the handlers whose one queue is bound to several
services' exchanges (several types, or every type).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
import logging
import uuid
from datetime import datetime, timezone
from functools import partial

import eventlet
from amqp.exceptions import ConnectionError as AmqpConnectionError, RecoverableConnectionError
from kombu import Connection
from kombu.exceptions import OperationalError
from nameko.amqp.publish import Publisher
from nameko.exceptions import ContainerBeingKilled
from nameko.events import EventHandler

from contracts import ContractError, MessageType, parse_envelope
from services.common.correlation import CORRELATION_KEY
from services.common.consumer_queues import (  # noqa: F401 - also imported from here
    DEAD_LETTER_EXCHANGE, DEFAULT_RETRY_DELAYS_S, PrefetchingQueueConsumer, batch_prefetch, dead_letter_queue,
    retry_delays, retry_queues,
)
from services.common.metrics import (
    MESSAGES_CONSUMED, MESSAGES_DEAD_LETTERED, MESSAGES_RETRIED, message_type_label,
)
from services.common.mongo import Database
from services.common.queue_type import durable_queue

log = logging.getLogger(__name__)



_FACT_NAMESPACE = uuid.UUID("4c1f1e7e-7a4b-4f4e-9d1c-6c696e6c6921")


def fact_id(*parts) -> str:
    """A message id that is the same whenever the same fact is published."""
    return str(uuid.uuid5(_FACT_NAMESPACE, "\x1f".join(str(p) for p in parts)))


@dataclass(frozen=True)
class Delivery:
    envelope: object
    body: object
    message: object


class MessageHandler(EventHandler):
    """Consumes one contract message type from one source service.

    Deliveries reach a worker in batches of up to ``max_batch``, one batch in
    flight at a time (concurrent ones would ``$inc`` the same counters and
    abort each other's transactions): what arrives while it runs is the next
    batch; with none in flight, what arrived within ``max_wait_s``. A failed
    batch is retried one message at a time (still in its turn), so only the
    message that cannot be handled is parked in the dead-letter queue.
    """

    queue_consumer = PrefetchingQueueConsumer()

    def __init__(self, source_service: str, message_type: MessageType, max_batch=1, max_wait_s=0.02, **kwargs):
        self.message_type = message_type
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._pending: list[Delivery] = []
        self._flush_timer = None
        self._stopped = False
        self._in_flight = 0  # this handler's workers running: a batch, or the retries of one that failed
        super().__init__(source_service, message_type.name, **kwargs)

    @property
    def prefetch_count(self) -> int:
        return batch_prefetch(self.max_batch, self.container.max_workers)

    @property
    def expected_types(self) -> set[str]:
        return {self.message_type.name}

    def setup(self):
        super().setup()
        self._setup_batching_and_dead_letter()

    def _setup_batching_and_dead_letter(self):
        durable_queue(self.queue)  # LINLI_QUEUE_TYPE, as the retry and dead-letter queues
        self.dead_letter_queue = durable_queue(dead_letter_queue(self.queue.name))
        delays = retry_delays(self.container.config)
        self.retry_queues = [durable_queue(q) for q in retry_queues(self.queue.name, delays)]
        self.dead_letter_publisher = Publisher(
            self.container.config["AMQP_URI"],
            serializer="json",
            declare=[DEAD_LETTER_EXCHANGE, self.dead_letter_queue, *self.retry_queues],
        )
        # Declare now, so the queues exist (and are visible to operators)
        # before the first failure, not only when something is parked.
        with Connection(self.container.config["AMQP_URI"]) as connection:
            for queue in (self.dead_letter_queue, *self.retry_queues):
                queue.bind(connection.default_channel).declare()

    def parse(self, body):
        return parse_envelope(body)

    def handle_message(self, body, message):
        if self._stopped:
            return  # unacked: redelivered to whoever consumes next
        try:
            envelope = self.parse(body)
            if self.expected_types is not None and envelope.type not in self.expected_types:
                raise ContractError(
                    f"expected {' or '.join(sorted(self.expected_types))}, got {envelope.type} on this queue"
                )
        except ContractError as exc:
            self.dead_letter(body, message, exc)
            self.queue_consumer.ack_message(message)
            return
        self._pending.append(Delivery(envelope, body, message))
        if self._batch_running():
            return  # the batch in flight hands these on when it ends
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = eventlet.spawn_after(self.max_wait_s, self._flush)

    def _batch_running(self) -> bool:
        return self.max_batch > 1 and self._in_flight > 0

    def _flush(self, everything: bool = False):
        """Hand a batch of what has arrived to a worker (unless one is in flight), or ``everything``."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()  # a no-op when the timer itself is flushing
            self._flush_timer = None
        if self._stopped:
            # Left unacked: the broker gives them back when the connection closes.
            self._pending = []
            return
        everything = everything or self.max_batch == 1
        while self._pending and (everything or not self._batch_running()):
            batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            self._spawn(batch)

    def _batch_ended(self):  # the batch's turn ends
        self._in_flight = max(0, self._in_flight - 1)
        if self._in_flight == 0 and self._pending and not self._stopped:
            # Not from the worker that ended: spawning waits for a free worker, and it still holds one.
            self.container.spawn_managed_thread(self._flush)

    def stop(self):
        """A graceful stop: what has arrived is handed to workers now, beside any batch in flight
        (the container waits for workers before it stops the database); nothing is spawned afterwards."""
        self._flush(everything=True)
        self._stopped = True
        super().stop()

    def kill(self):
        self._stopped = True
        super().kill()

    def _spawn(self, batch: list[Delivery]):
        first = batch[0]
        context_data = self.unpack_message_headers(first.message)
        # A batch runs as one worker: it carries the first message's correlation id.
        context_data[CORRELATION_KEY] = first.envelope.correlationid or first.envelope.id
        self._in_flight += 1
        try:
            self.container.spawn_worker(
                self, ([d.envelope for d in batch],), {}, context_data=context_data,
                handle_result=partial(self.handle_processed, batch),
            )
        except ContainerBeingKilled:
            self._in_flight -= 1
            for delivery in batch:
                self.queue_consumer.requeue_message(delivery.message)

    def handle_processed(self, batch, worker_ctx, result=None, exc_info=None):
        try:
            if exc_info is None:
                for delivery in batch:
                    self.queue_consumer.ack_message(delivery.message)
            elif len(batch) == 1:
                self.retry_or_dead_letter(batch[0], exc_info[1])
                self.queue_consumer.ack_message(batch[0].message)
            else:
                # Find the message that fails: each on its own, outside this worker, in the batch's turn.
                self._in_flight += 1
                self.container.spawn_managed_thread(partial(self._retry_one_by_one, batch))
        except BROKER_CONNECTION_ERRORS as exc:
            # The broker went away (a restart, a kill): nameko's ack only forgives amqp's own
            # ConnectionError, and anything raised here kills the container. What was not acked
            # comes back when the consumer reconnects, and is handled once (``exactly_once``).
            log.warning("%s: the broker connection is gone (%s); %d message(s) will be redelivered",
                        self.container.service_name, type(exc).__name__, len(batch))
        finally:
            self._batch_ended()
        return result, exc_info

    def _retry_one_by_one(self, batch: list[Delivery]):
        try:
            for delivery in batch:
                self._spawn([delivery])
        finally:
            self._batch_ended()

    def retry_or_dead_letter(self, delivery: Delivery, error: BaseException) -> None:
        """Try a failed message again after a delay (a database that is down, a service that
        is restarting), up to a bounded number of attempts; then park it with its reason."""
        headers = dict(delivery.message.headers or {})
        attempts = int(headers.get(ATTEMPTS_HEADER, 1))
        if attempts > len(self.retry_queues):
            self.dead_letter(delivery.body, delivery.message, error, attempts)
            return
        retry_queue = self.retry_queues[attempts - 1]
        log.info("%s: %s failed (attempt %d), trying again in %s: %s", self.container.service_name,
                 delivery.envelope.type, attempts, retry_queue.name.rsplit(".", 1)[-1], type(error).__name__)
        info = delivery.message.delivery_info
        headers.setdefault("x-linli-original-exchange", info.get("exchange", ""))
        headers.setdefault("x-linli-original-routing-key", info.get("routing_key", ""))
        self.dead_letter_publisher.publish(
            delivery.body, exchange="", routing_key=retry_queue.name,
            headers={**headers, ATTEMPTS_HEADER: attempts + 1, "x-linli-last-error": _reason(error)[:2000]})
        MESSAGES_RETRIED.labels(self.container.service_name, delivery.envelope.type).inc()

    def dead_letter(self, body, message, error: BaseException, attempts: int = 1) -> None:
        """Park the message with its reason; it is published (with confirms) before the ack."""
        service = self.container.service_name
        type_name = body.get("type", "unknown") if isinstance(body, dict) else "unknown"
        reason = _reason(error)
        log.warning("%s: dead-lettering a %s message: %s", service, type_name, type(error).__name__)
        self.dead_letter_publisher.publish(
            body if isinstance(body, dict) else {"undecodable": json.dumps(body, default=str)},
            exchange=DEAD_LETTER_EXCHANGE,
            routing_key=self.queue.name,
            headers={
                "x-linli-error": reason[:2000],
                "x-linli-error-type": type(error).__name__,
                "x-linli-consumer": f"{service}.{self.method_name}",
                # Where it was first published, also after retries (which come back by another route).
                "x-linli-original-exchange": (message.headers or {}).get(
                    "x-linli-original-exchange", message.delivery_info.get("exchange", "")),
                "x-linli-original-routing-key": (message.headers or {}).get(
                    "x-linli-original-routing-key", message.delivery_info.get("routing_key", "")),
                "x-linli-dead-lettered-at": datetime.now(timezone.utc).isoformat(),
                "x-linli-attempts": attempts,
            },
        )
        MESSAGES_DEAD_LETTERED.labels(service, message_type_label(type_name)).inc()


ATTEMPTS_HEADER = "x-linli-attempts"
# A reset socket (OSError), a closed connection (amqp), a publish whose retries ran out (kombu).
BROKER_CONNECTION_ERRORS = (OSError, AmqpConnectionError, RecoverableConnectionError, OperationalError)


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _database_and_outbox(service):
    """The service's one ``MongoDatabase`` and, if it has one, its ``Outbox`` staging: what a handler
    publishes through it is written once per batch, in the handler's transaction (``exactly_once``)."""
    from services.common.outbox import Staging  # here: the outbox imports this module

    databases = [value for value in vars(service).values() if isinstance(value, Database)]
    outboxes = [value for value in vars(service).values() if isinstance(value, Staging)]
    if len(databases) != 1 or len(outboxes) > 1:
        raise RuntimeError(
            f"{type(service).__name__} needs exactly one MongoDatabase dependency for exactly-once message "
            f"handling, and one Outbox at most (found {len(databases)} and {len(outboxes)})"
        )
    return databases[0], (outboxes or [None])[0]


def _handled_exactly_once(method, batch: bool):
    """Wrap a handler method so it sees each envelope id once per consumer (see ``message_handler``)."""

    @functools.wraps(method)
    def handle_once(self, envelopes):
        consumer = f"{self.name}.{method.__name__}"

        def effect(fresh):
            if batch:
                method(self, fresh)
            else:
                for envelope in fresh:
                    method(self, envelope)

        database, outbox = _database_and_outbox(self)
        fresh = database.exactly_once(consumer, envelopes, effect, outbox=outbox)
        fresh_ids = {envelope.id for envelope in fresh}
        for envelope in envelopes:
            outcome = "processed" if envelope.id in fresh_ids else "duplicate"
            MESSAGES_CONSUMED.labels(self.name, envelope.type, outcome).inc()

    return handle_once


def message_handler(message_type: MessageType, *, batch: bool = False, max_batch: int = 200,
                    max_wait_s: float = 0.02, source: str | None = None, **kwargs):
    """Decorate a handler of ``message_type``, from the service its contract names as its producer
    (``source``: another, for a test's stand-in producer).

    ``method(self, envelope)`` by default; with ``batch=True``,
    ``method(self, envelopes)`` receives up to ``max_batch`` at once. Either
    way it sees each envelope id once per consumer, and its writes through the
    service's ``MongoDatabase`` (``session=self.db.session``) commit together
    with the record that the envelopes were processed.
    """

    source_service = source or message_type.producer
    if source is None and not message_type.on_the_bus:
        raise ContractError(f"{message_type.name} is not published on the bus (producer {message_type.producer!r})")

    def decorate(method):
        return MessageHandler.decorator(
            source_service, message_type, max_batch=max_batch if batch else 1, max_wait_s=max_wait_s, **kwargs
        )(_handled_exactly_once(method, batch))

    return decorate
