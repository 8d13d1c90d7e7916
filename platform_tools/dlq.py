"""Dead-letter queues for operators: what is parked, why, and sending it back once fixed.

``linli dlq list|show|replay``. Parked messages keep their reason in headers
(``x-linli-error``, ``x-linli-consumer``, ``x-linli-attempts``) and where they
were first published (``x-linli-original-exchange``/``-routing-key``); a
replay publishes each back there with confirms, then removes it from the
dead-letter queue, so a crash in between repeats it rather than loses it
(consumers skip an envelope id they have already handled).
"""
from __future__ import annotations

from dataclasses import dataclass

import amqp
from kombu import Connection

SUFFIX = ".dead-letter"


@dataclass(frozen=True)
class Parked:
    queue: str
    message_id: str | None
    type: str | None
    error: str | None
    consumer: str | None
    attempts: int | None
    dead_lettered_at: str | None


def depths(amqp_uri: str, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each dead-letter queue that exists (passive declare: creates nothing)."""
    found = {}
    with Connection(amqp_uri) as connection:
        for queue in queues:
            channel = connection.channel()
            try:
                _, count, _ = channel.queue_declare(queue, passive=True)
                found[queue] = count
            except amqp.exceptions.NotFound:
                pass
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - a channel closed by the broker is fine
                    pass
    return found


def peek(amqp_uri: str, queue: str, limit: int = 20) -> list[Parked]:
    """The first ``limit`` parked messages, left where they are."""
    seen = []
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        for _ in range(limit):
            message = channel.basic_get(queue, no_ack=False)
            if message is None:
                break
            seen.append(_describe(queue, message))
        channel.close()  # unacked messages go back to the queue, in order
    return seen


def replay(amqp_uri: str, queue: str, message_id: str | None = None) -> int:
    """Publish parked messages (all, or the one with ``message_id``) back where they came from."""
    replayed = 0
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        channel.confirm_select()
        while (message := channel.basic_get(queue, no_ack=False)) is not None:
            headers = dict(message.headers or {})
            if message_id is not None and _envelope_id(message) != message_id:
                continue  # left unacked: it returns to the queue when the channel closes
            channel.basic_publish(
                amqp.Message(message.body, content_type=message.content_type, delivery_mode=2,
                             application_headers={k: v for k, v in headers.items()
                                                  if k.startswith("x-linli-original")}),
                exchange=headers.get("x-linli-original-exchange", ""),
                routing_key=headers.get("x-linli-original-routing-key", queue.removesuffix(SUFFIX)),
            )
            channel.basic_ack(message.delivery_tag)
            replayed += 1
        channel.close()
    return replayed


def _envelope_id(message) -> str | None:
    import json

    try:
        return json.loads(message.body).get("id")
    except (ValueError, AttributeError):
        return None


def _describe(queue: str, message) -> Parked:
    import json

    headers = dict(message.headers or {})
    try:
        body = json.loads(message.body)
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    return Parked(queue=queue, message_id=body.get("id"), type=body.get("type"), error=headers.get("x-linli-error"),
                  consumer=headers.get("x-linli-consumer"), attempts=headers.get("x-linli-attempts"),
                  dead_lettered_at=headers.get("x-linli-dead-lettered-at"))
