"""Handlers whose one queue is bound to several services' exchanges: several message types
(``multi_source_message_handler``), or every type, known or not (``every_message_handler``).

They behave as ``messaging.MessageHandler`` (contract check, batching, exactly once, retries,
dead-letter queue); only the queue's bindings and what counts as a message they expect differ.
"""
from __future__ import annotations

from kombu import Queue, binding
from nameko.events import get_event_exchange
from nameko.messaging import Consumer

from contracts import MessageType, parse_envelope_or_unknown
from services.common.messaging import MessageHandler, _handled_exactly_once


class MultiSourceMessageHandler(MessageHandler):
    """Consumes several message types, from several services' exchanges, on one queue.

    nameko's ``EventHandler`` binds a queue to one exchange and routing key;
    this one binds its queue, ``linli-<service>.<method>``, once per
    ``(source_service, message_type)`` pair, and otherwise behaves as
    ``MessageHandler`` (contract check, batching, dead-letter queue).
    """

    def __init__(self, sources, **kwargs):
        self.sources = tuple(sources)
        if not self.sources:
            raise ValueError("MultiSourceMessageHandler needs at least one (source_service, message_type)")
        first_source, first_type = self.sources[0]
        super().__init__(first_source, first_type, **kwargs)

    @property
    def expected_types(self) -> set[str]:
        return {message_type.name for _, message_type in self.sources}

    def routes(self) -> list[tuple[str, str]]:
        """(source service, routing key) pairs the queue is bound to."""
        return [(source, message_type.name) for source, message_type in self.sources]

    def setup(self):
        config = self.container.config
        self.queue = Queue(
            f"linli-{self.container.service_name}.{self.method_name}",
            bindings=[binding(get_event_exchange(source, config), routing_key=key) for source, key in self.routes()],
            durable=True,
        )
        Consumer.setup(self)  # EventHandler.setup would build a queue of one binding
        self._setup_batching_and_dead_letter()


def _handler_decorator(handler_cls, what, *, batch: bool, max_batch: int, max_wait_s: float, **kwargs):
    def decorate(method):
        return handler_cls.decorator(
            what, max_batch=max_batch if batch else 1, max_wait_s=max_wait_s, **kwargs
        )(_handled_exactly_once(method, batch))

    return decorate


def multi_source_message_handler(sources, *, batch: bool = False, max_batch: int = 200,
                                 max_wait_s: float = 0.02, **kwargs):
    """Like ``message_handler``, for ``sources``: ``[(source_service, message_type), ...]`` on one queue."""
    return _handler_decorator(MultiSourceMessageHandler, sources, batch=batch, max_batch=max_batch,
                              max_wait_s=max_wait_s, **kwargs)


class EveryMessageHandler(MultiSourceMessageHandler):
    """Every message published by ``source_services``, whatever its type, on one queue.

    A type or version this build does not know still reaches the method, as
    an ``UnknownEnvelope`` (``envelope.known`` is False) with its data
    unchecked; a known type whose data breaks its contract is dead-lettered.
    For a consumer that must keep everything, such as a history.
    """

    def __init__(self, source_services, **kwargs):
        self.source_services = tuple(source_services)
        MessageHandler.__init__(self, self.source_services[0], _ANY_TYPE, **kwargs)
        self.sources = ()

    @property
    def expected_types(self):
        return None

    def parse(self, body):
        envelope = parse_envelope_or_unknown(body)[0]
        # The body as it arrived, fields this build does not know included, for a
        # consumer that keeps messages (``envelope.received``).
        object.__setattr__(envelope, "received", body)
        return envelope

    def routes(self) -> list[tuple[str, str]]:
        return [(source, "#") for source in self.source_services]


_ANY_TYPE = MessageType("*", 1, None, "any message type", {})


def every_message_handler(source_services, *, batch: bool = False, max_batch: int = 200,
                          max_wait_s: float = 0.02, **kwargs):
    """Like ``message_handler``, for every message ``source_services`` publish (see ``EveryMessageHandler``)."""
    return _handler_decorator(EveryMessageHandler, source_services, batch=batch, max_batch=max_batch,
                              max_wait_s=max_wait_s, **kwargs)
