"""``LINLI_QUEUE_TYPE``: ``classic`` (the default: one broker) or ``quorum`` (a RabbitMQ cluster).

A cluster's definitions (``deploy/k8s/rabbitmq/definitions.json``) pre-declare every queue as a
quorum queue, and RabbitMQ refuses a declare whose arguments differ from the queue's
(``PRECONDITION_FAILED - inequivalent arg 'x-queue-type'``). So with ``quorum`` every durable
queue a service shares with its other instances is declared with ``x-queue-type: quorum``: the
message handlers' queues with their retry and dead-letter queues, the ingest queues, partner
feed queues, and nameko's ``rpc-<service>`` queue. nameko's RPC reply queues (one per
instance, expiring) stay classic. With ``classic`` nothing is added, as before.
"""
from __future__ import annotations

import functools
import os

from kombu import Queue
from nameko.rpc import RpcConsumer

QUEUE_TYPE_VARIABLE = "LINLI_QUEUE_TYPE"
QUEUE_TYPES = ("classic", "quorum")


def queue_type() -> str:
    value = os.environ.get(QUEUE_TYPE_VARIABLE) or "classic"
    if value not in QUEUE_TYPES:
        raise ValueError(f"{QUEUE_TYPE_VARIABLE} must be one of {', '.join(QUEUE_TYPES)}, not {value!r}")
    return value


def queue_type_arguments(kind: str | None = None) -> dict:
    """The declare arguments of ``kind`` (default: ``LINLI_QUEUE_TYPE``); none for classic."""
    kind = kind or queue_type()
    return {"x-queue-type": "quorum"} if kind == "quorum" else {}


def durable_queue(queue: Queue) -> Queue:
    """``queue``, with the arguments of ``LINLI_QUEUE_TYPE`` added (in place, so a queue already
    handed to a consumer is declared the same way), and returned."""
    queue.queue_arguments = {**(queue.queue_arguments or {}), **queue_type_arguments()}
    return queue


def _rpc_queue_of_queue_type(setup):
    # nameko 2.14 has no setting for its RPC queue's arguments.
    if getattr(setup, "linli_queue_type", False):
        return setup

    @functools.wraps(setup)
    def setup_then_type_queue(self):
        setup(self)
        durable_queue(self.queue)

    setup_then_type_queue.linli_queue_type = True
    return setup_then_type_queue


RpcConsumer.setup = _rpc_queue_of_queue_type(RpcConsumer.setup)
