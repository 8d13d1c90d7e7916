"""The queues around a message handler's own: its prefetch window, the retry queues a failed
message waits in, and the dead-letter queue where it is parked.

A batch consumer (``messaging.MessageHandler`` with ``max_batch > 1``) runs one batch at a
time: while its worker runs, deliveries accumulate, and the next batch is what accumulated.
So its prefetch window must hold the batch in flight and the next one, not ``max_workers``
messages (nameko's window for every consumer of a container): with a window of
``max_workers`` = 50, a consumer of ``max_batch`` = 200 never sees a batch of more than 50,
and nothing arrives while one runs.
"""
from __future__ import annotations

from functools import partial

from kombu import Exchange, Queue
from nameko.messaging import QueueConsumer

DEAD_LETTER_EXCHANGE = Exchange("linli.dead-letter", type="direct", durable=True)
DEFAULT_RETRY_DELAYS_S = (1, 5, 30, 120)


class PrefetchingQueueConsumer(QueueConsumer):
    """nameko's queue consumer, with each handler's ``prefetch_count`` as its window.

    RabbitMQ applies a channel's ``basic.qos`` to the consumers it starts afterwards, and
    nameko sets it for every consumer before it starts any (so the last one set wins):
    here each consumer starts right after its own ``basic.qos``."""

    def get_consumers(self, consumer_cls, channel):
        for provider in self._providers:
            consumer = consumer_cls(queues=[provider.queue], callbacks=[partial(self.handle_message, provider)],
                                    accept=self.accept)
            consumer.qos(prefetch_count=getattr(provider, "prefetch_count", None) or self.prefetch_count)
            consumer.consume()  # kombu starts it once; the mixin's own consume() is then a no-op
            self._consumers[provider] = consumer
        return self._consumers.values()


def batch_prefetch(max_batch: int, max_workers: int) -> int:
    """The window of a consumer of ``max_batch``: a batch in flight and the next one, accumulating."""
    return max(max_workers, 2 * max_batch) if max_batch > 1 else max_workers


def retry_delays(config) -> tuple[float, ...]:
    """``MESSAGE_RETRY_DELAYS_S``: seconds before each retry ("1,5,30,120"); its length is the number of retries."""
    raw = config.get("MESSAGE_RETRY_DELAYS_S")
    if raw is None or raw == "":
        return DEFAULT_RETRY_DELAYS_S
    values = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    return tuple(float(v) for v in values)


def retry_queues(queue_name: str, delays) -> list[Queue]:
    """One holding queue per retry: a message waits there ``delay`` seconds (queue TTL), then
    RabbitMQ dead-letters it back to ``queue_name`` through the default exchange. A queue per
    delay keeps every queue first-in-first-out, which per-message TTLs would not."""
    return [
        Queue(f"{queue_name}.retry.{int(delay * 1000)}ms", durable=True, queue_arguments={
            "x-message-ttl": int(delay * 1000), "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue_name})
        for delay in delays
    ]


def dead_letter_queue(queue_name: str) -> Queue:
    """The queue where messages that ``queue_name``'s consumer could not handle are parked."""
    return Queue(
        f"{queue_name}.dead-letter",
        exchange=DEAD_LETTER_EXCHANGE,
        routing_key=queue_name,
        durable=True,
    )
