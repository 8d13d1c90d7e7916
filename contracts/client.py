"""A small client for systems outside Linli that do not run nameko: pika and ``contracts`` only.

``Publisher`` — for internal systems of the city publishing into the ingest door:
the data is checked against its contract before anything is sent, wrapped in
the CloudEvents envelope, and published to ``linli.ingest`` with publisher
confirms and ``mandatory``; a lost connection is retried with backoff, a
bounded number of times, with the same envelope id (Linli processes an id
once, so a retry never registers twice). Each reconnection keeps trying for up
to ``reconnect_for_s`` (pika's own ``connection_attempts``/``retry_delay``), so a
broker that restarts is waited out rather than reported as a failure.
``publish_and_wait`` also waits for Linli's ``ingest.accepted`` reply (RabbitMQ
direct reply-to).

``FeedConsumer`` — for partner departments consuming their ``linli.feed.<partner>``
queue: each envelope is verified against the contracts (``data.personal`` kept
and checked, see ``contracts.feeds``) and handed to the callback; the message
is acked only after the callback returns, requeued when it raises, and
rejected (to the queue's dead-letter exchange, if any) after ``max_attempts``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections import Counter

import pika
from marshmallow import ValidationError
from pika.exceptions import AMQPChannelError, AMQPConnectionError, NackError, UnroutableError

from contracts.envelope import Envelope, build_envelope, parse_envelope_or_unknown
from contracts.feeds import PERSONAL_KEY, personal_fields_of
from contracts.ingest import INGEST_ACCEPTED, INGEST_TYPES, MAX_INGEST_BYTES
from contracts.registry import ContractError

log = logging.getLogger(__name__)
INGEST_EXCHANGE = "linli.ingest"
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
_BROKER_ERRORS = (AMQPConnectionError, AMQPChannelError, NackError, OSError)


class NotAnIngestType(ContractError):
    def __init__(self, type_name: str):
        super().__init__(f"{type_name!r} is not a type internal systems may send; one of {sorted(INGEST_TYPES)}")


class MessageTooLarge(ContractError):
    def __init__(self, size: int):
        super().__init__(f"the message is {size} bytes; Linli accepts at most {MAX_INGEST_BYTES}")


class PublishFailed(Exception):
    """The broker could not be reached, or did not confirm, after every attempt."""


class NoReply(Exception):
    """No ``ingest.accepted`` arrived in time: the message may still be processed, or have been rejected."""


def _backoff(attempt: int, base_s: float, max_s: float) -> None:
    time.sleep(min(base_s * 2 ** (attempt - 1), max_s))


RECONNECT_DELAY_S = 1.0


def _reconnecting(amqp_url: str, reconnect_for_s: float) -> pika.URLParameters:
    """Connection parameters that keep trying to connect for ``reconnect_for_s`` (a refused connection
    fails at once, so attempts × delay is the time waited), unless the URL sets ``connection_attempts``."""
    parameters = pika.URLParameters(amqp_url)
    if "connection_attempts=" not in amqp_url:
        parameters.retry_delay = RECONNECT_DELAY_S
        parameters.connection_attempts = max(1, math.ceil(reconnect_for_s / RECONNECT_DELAY_S))
    return parameters


class Publisher:
    """``Publisher(amqp_url, source)``; ``source`` names your system, e.g. ``grid-system/wuhou``."""

    def __init__(self, amqp_url: str, source: str, *, app_id: str | None = None, attempts: int = 5,
                 backoff_s: float = 0.5, max_backoff_s: float = 8.0, reconnect_for_s: float = 60.0):
        self.amqp_url, self.source, self.app_id = amqp_url, source, app_id or source
        self.attempts, self.backoff_s, self.max_backoff_s = attempts, backoff_s, max_backoff_s
        self.reconnect_for_s = reconnect_for_s
        self._connection = self._channel = None
        self._replies: dict[str, dict] = {}

    def envelope(self, type_name: str, data: dict, *, subject=None, community=None, message_id=None) -> Envelope:
        """The envelope that would be sent; raises (``InvalidPayload``, ``NotAnIngestType``…) before any I/O."""
        if type_name not in INGEST_TYPES:
            raise NotAnIngestType(type_name)
        return build_envelope(type_name, data, source=self.source, subject=subject,
                              community=community or data.get("community_id"), message_id=message_id)

    def publish(self, type_name: str, data: dict, **envelope_attributes) -> Envelope:
        """Check, wrap and publish one message; returns its envelope once the broker has confirmed it."""
        envelope = self.envelope(type_name, data, **envelope_attributes)
        self._send(envelope, reply_to=None)
        return envelope

    def publish_and_wait(self, type_name: str, data: dict, timeout_s: float = 30, **envelope_attributes) -> dict:
        """As ``publish``, then wait for Linli's ``ingest.accepted``; returns its data (``outcome``, ids)."""
        envelope = self.envelope(type_name, data, **envelope_attributes)
        deadline = time.monotonic() + timeout_s
        self._send(envelope, reply_to=DIRECT_REPLY_TO)
        while time.monotonic() < deadline:
            if envelope.id in self._replies:
                return self._replies.pop(envelope.id)
            try:
                self._connection.process_data_events(time_limit=min(0.5, max(deadline - time.monotonic(), 0)))
            except _BROKER_ERRORS:  # the reply went with the channel: send again, same id, same result
                self._close()
                self._send(envelope, reply_to=DIRECT_REPLY_TO)
        raise NoReply(f"no ingest.accepted for {envelope.id} within {timeout_s} s; see linli.ingest.rejected")

    def _send(self, envelope: Envelope, reply_to: str | None) -> None:
        body = json.dumps(envelope.to_wire(), ensure_ascii=False).encode("utf-8")
        if len(body) > MAX_INGEST_BYTES:
            raise MessageTooLarge(len(body))
        properties = pika.BasicProperties(content_type="application/cloudevents+json", delivery_mode=2,
                                          message_id=envelope.id, correlation_id=envelope.id,
                                          app_id=self.app_id, reply_to=reply_to)
        for attempt in range(1, self.attempts + 1):
            try:
                channel = self._open(with_replies=reply_to is not None)
                channel.basic_publish(INGEST_EXCHANGE, envelope.type, body, properties, mandatory=True)
                return
            except UnroutableError:
                raise PublishFailed(f"{INGEST_EXCHANGE} returned the message: is Linli's ingest door set up?") from None
            except _BROKER_ERRORS as exc:
                self._close()
                if attempt == self.attempts:
                    raise PublishFailed(f"not confirmed after {attempt} attempts: {type(exc).__name__}") from exc
                log.warning("linli publisher: %s; retrying (%d/%d)", type(exc).__name__, attempt, self.attempts)
                _backoff(attempt, self.backoff_s, self.max_backoff_s)

    def _open(self, with_replies: bool):
        if self._connection is None or self._connection.is_closed:
            self._connection = pika.BlockingConnection(_reconnecting(self.amqp_url, self.reconnect_for_s))
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
            self._consuming_replies = False
        if with_replies and not self._consuming_replies:
            self._channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
            self._consuming_replies = True
        return self._channel

    def _on_reply(self, channel, method, properties, body):
        try:
            reply = json.loads(body)
            data = INGEST_ACCEPTED.load(reply.get("data"))
        except (ValueError, AttributeError, ContractError):
            log.warning("linli publisher: a reply that is not ingest.accepted was ignored")
            return
        self._replies[data["ingested_id"]] = data

    def _close(self):
        try:
            if self._connection is not None and self._connection.is_open:
                self._connection.close()
        except _BROKER_ERRORS:
            pass
        self._connection = self._channel = None

    def close(self):
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_feed_message(body: bytes) -> Envelope:
    """A partner-feed delivery as an ``Envelope``: ``data`` checked against its contract (a type this
    client does not know yet arrives unchecked, ``envelope.known`` False), ``data.personal`` checked and kept."""
    wire = json.loads(body)
    envelope, _ = parse_envelope_or_unknown(wire)
    personal = personal_fields_of(wire) if isinstance(wire.get("data"), dict) else None
    if personal is None:
        return envelope
    return dataclasses.replace(envelope, data={**envelope.data, PERSONAL_KEY: personal})


class FeedConsumer:
    """``FeedConsumer(amqp_url, "linli.feed.exit-entry", callback).run()``; ``callback(envelope)``."""

    def __init__(self, amqp_url: str, queue: str, callback, *, max_attempts: int = 3, prefetch_count: int = 10,
                 reconnect_attempts: int = 5, backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 reconnect_for_s: float = 60.0):
        self.amqp_url, self.queue, self.callback = amqp_url, queue, callback
        self.reconnect_for_s = reconnect_for_s
        self.max_attempts, self.prefetch_count = max_attempts, prefetch_count
        self.reconnect_attempts, self.backoff_s, self.max_backoff_s = reconnect_attempts, backoff_s, max_backoff_s
        self._failures: Counter = Counter()
        self._stopping = False
        self._last_message = time.monotonic()

    def stop(self) -> None:
        self._stopping = True

    def run(self, idle_timeout_s: float | None = None) -> None:
        """Consume until ``stop()``, or until no message came for ``idle_timeout_s``; reconnects on loss."""
        self._stopping, failures = False, 0
        self._last_message = time.monotonic()
        while not self._stopping:
            try:
                connection = pika.BlockingConnection(_reconnecting(self.amqp_url, self.reconnect_for_s))
                try:
                    channel = connection.channel()
                    channel.basic_qos(prefetch_count=self.prefetch_count)
                    channel.basic_consume(self.queue, self._on_message)
                    failures = 0
                    while not self._stopping:
                        connection.process_data_events(time_limit=0.5)
                        if idle_timeout_s is not None and time.monotonic() - self._last_message > idle_timeout_s:
                            self._stopping = True
                finally:
                    if connection.is_open:
                        connection.close()
            except _BROKER_ERRORS as exc:
                failures += 1
                if failures >= self.reconnect_attempts:
                    raise
                log.warning("linli feed consumer: %s; reconnecting (%d/%d)", type(exc).__name__, failures,
                            self.reconnect_attempts)
                _backoff(failures, self.backoff_s, self.max_backoff_s)

    def _on_message(self, channel, method, properties, body):
        self._last_message = time.monotonic()
        try:
            envelope = parse_feed_message(body)
        except (ValueError, ContractError, ValidationError) as exc:
            log.warning("linli feed consumer: a message breaks the contract (%s); rejected", type(exc).__name__)
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        try:
            self.callback(envelope)
        except Exception as exc:  # noqa: BLE001 - the partner's callback may raise anything
            self._failures[envelope.id] += 1
            gave_up = self._failures[envelope.id] >= self.max_attempts
            log.warning("linli feed consumer: callback raised %s on %s (attempt %d)%s", type(exc).__name__,
                        envelope.id, self._failures[envelope.id], "; rejected" if gave_up else "; requeued")
            if gave_up:
                del self._failures[envelope.id]
            channel.basic_nack(method.delivery_tag, requeue=not gave_up)
            return
        self._failures.pop(envelope.id, None)
        channel.basic_ack(method.delivery_tag)
