"""Publishing a batch of messages with publisher confirms for the whole batch.

nameko's ``Publisher`` waits for the broker's ack of each message before it publishes the next: a
round trip (and, for a durable queue, a disk write) per message. ``BatchPublisher.publish`` sends
the whole batch, then waits until the broker has acked or nacked every message (RabbitMQ acks
many at once: ``basic.ack`` with ``multiple`` settles every delivery tag up to its own). Only
what was acked counts as sent; a nack, a timeout or a lost connection leaves the rest to the
caller, who sends it again later (at least once: consumers skip an id they have handled).

What a consumer sees is what nameko's ``Publisher`` sent: the same exchange (declared once per
channel), routing key, JSON body (``application/json``, ``utf-8``), empty headers, priority 0,
persistent delivery, not mandatory.
"""
from __future__ import annotations

import logging
import socket
import time

from eventlet.semaphore import Semaphore
from kombu import Connection, Producer
from nameko.constants import DEFAULT_RETRY_POLICY, DEFAULT_TRANSPORT_OPTIONS, PERSISTENT

log = logging.getLogger(__name__)
CONFIRM_TIMEOUT_S = 30.0  # for the broker's last ack of a batch; then what is unsettled is sent again later


class Batch:
    """The outcome of each message of one batch: ``None`` while the broker has not settled it."""

    def __init__(self, size: int):
        self.first_tag, self.outcome, self.unsettled = 1, [None] * size, size  # first_tag: set when published
        self._settled_below = 0  # every position under it is settled (a ``multiple`` ack settles a prefix)

    def settle(self, delivery_tag: int, multiple: bool, acked: bool) -> None:
        last = min(delivery_tag - self.first_tag, len(self.outcome) - 1)
        for position in range(max(self._settled_below, 0) if multiple else last, last + 1):
            if position >= 0 and self.outcome[position] is None:
                self.outcome[position] = acked
                self.unsettled -= 1
        if multiple:
            self._settled_below = max(self._settled_below, last + 1)


class BatchPublisher:
    """One connection and one channel in confirm mode per process, reused by every batch (two
    greenthreads never use it at once) and opened again after a failure. ``exchange``: a kombu
    ``Exchange``, declared on each new channel."""

    def __init__(self, amqp_uri: str, exchange, confirm_timeout_s: float = CONFIRM_TIMEOUT_S):
        self.amqp_uri, self.exchange, self.confirm_timeout_s = amqp_uri, exchange, confirm_timeout_s
        self._lock = Semaphore()
        self._connection = self._producer = self._batch = None
        self._published = 0  # delivery tags the current channel has handed out
        errors_of = Connection(amqp_uri)  # not connected: only asked which errors a reconnection cures
        self._recoverable = errors_of.recoverable_connection_errors + errors_of.recoverable_channel_errors

    def publish(self, messages: list[tuple[dict, str]]) -> list[bool]:
        """``messages``: ``(body, routing_key)``; returns for each whether the broker acked it. A lost
        connection is opened again and what it had not acked published again, as nameko retries."""
        acked = [False] * len(messages)
        if not messages:
            return acked
        with self._lock:
            for attempt in range(1 + DEFAULT_RETRY_POLICY["max_retries"]):
                waiting = [position for position, done in enumerate(acked) if not done]
                batch = Batch(len(waiting))
                try:
                    self._publish_confirmed([messages[position] for position in waiting], batch)
                    failure = None
                except Exception as exc:  # noqa: BLE001 - the connection is dropped; what is not acked waits
                    self.close()
                    failure = exc
                except BaseException:  # killed mid-batch: the channel may hold half a message
                    self.close()
                    raise
                for position, outcome in zip(waiting, batch.outcome):
                    acked[position] = outcome is True
                if failure is None:
                    return acked
                if not self._retried(failure, attempt, acked):
                    return acked
        return acked

    def close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - closing what is already broken
                pass

    def _publish_confirmed(self, messages: list[tuple[dict, str]], batch: Batch) -> None:
        producer = self._ready()
        batch.first_tag, self._batch = self._published + 1, batch
        try:
            for body, routing_key in messages:
                producer.publish(body, routing_key=routing_key, exchange=self.exchange, headers={},
                                 delivery_mode=PERSISTENT, mandatory=False, priority=0, serializer="json",
                                 retry=False)
                self._published += 1
            deadline = time.monotonic() + self.confirm_timeout_s
            while batch.unsettled:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout("no confirm from the broker")
                self._connection.drain_events(timeout=remaining)
        finally:
            self._batch = None

    def _ready(self) -> Producer:
        if self._producer is None:
            connection = Connection(self.amqp_uri, transport_options=DEFAULT_TRANSPORT_OPTIONS.copy())
            channel = connection.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(lambda tag, multiple: self._settled(tag, multiple, True))
            channel.events["basic_nack"].add(lambda tag, multiple: self._settled(tag, multiple, False))
            self._connection, self._published = connection, 0
            self._producer = Producer(channel, exchange=self.exchange, serializer="json", auto_declare=True)
        return self._producer

    def _settled(self, delivery_tag: int, multiple: bool, acked: bool) -> None:
        if self._batch is not None:
            self._batch.settle(delivery_tag, multiple, acked)

    def _retried(self, failure: Exception, attempt: int, acked: list[bool]) -> bool:
        """Whether to publish again what was not acked: after a lost connection (a stale one at once,
        then after 2, 3, … s), not after a timeout (an alarm, flow control: the relay sends it later)."""
        if isinstance(failure, socket.timeout) or not isinstance(failure, self._recoverable + (OSError,)) \
                or attempt == DEFAULT_RETRY_POLICY["max_retries"]:
            log.warning("publishing: %s; %d message(s) left unsent", type(failure).__name__, acked.count(False))
            return False
        log.info("publishing: %s; connecting again", type(failure).__name__)
        options = DEFAULT_TRANSPORT_OPTIONS
        time.sleep(0.0 if attempt == 0 else min(options["interval_start"] + options["interval_step"] * (attempt - 1),
                                                options["interval_max"]))
        return True
