"""The partner-feed consumer's handling: exactly once, and free for what no partner subscribed to.

Every message a partner may subscribe to reaches one queue, and most match no subscription. A
batch is first compared with the active subscriptions (one read, outside any transaction); only
the messages some subscription matches are claimed and recorded, together, in one exactly-once
transaction (``Database.exactly_once``: claims, entries, deliveries, commit). A batch that none
matches writes nothing, so it costs no transaction, and exactly once still holds: nothing was
recorded, so nothing can be recorded twice. A redelivery of such a message is compared again and
is recorded — once, under its claim — only if a subscription made meanwhile matches it; a
message that was recorded holds its claim, and a redelivery of it finds the claim and adds nothing.
"""
from __future__ import annotations

import functools

from services.common.metrics import MESSAGES_CONSUMED
from services.common.multi_source import MultiSourceMessageHandler
from services.partners import feed_store


def feed_recorder(sources, *, max_batch: int = 200, max_wait_s: float = 0.02):
    """Decorate ``method(self, envelopes, subscriptions)``, the recording of the messages of ``sources``
    (``[(source_service, message_type), ...]``, one queue) that match an active subscription; it
    runs in the transaction that claims them (its writes with ``session=self.db.session``)."""

    def decorate(method):
        @functools.wraps(method)
        def handle(self, envelopes):
            consumer = f"{self.name}.{method.__name__}"  # the claims' prefix, as ``message_handler`` names it
            subscriptions = feed_store.active_subscriptions(self.db, envelopes)
            matched = [e for e in envelopes if feed_store.matching(subscriptions, e)]
            fresh = self.db.exactly_once(consumer, matched, lambda fresh: method(self, fresh, subscriptions)) \
                if matched else []
            recorded = {e.id for e in fresh}
            unmatched = {e.id for e in envelopes} - {e.id for e in matched}
            for envelope in envelopes:
                outcome = "processed" if envelope.id in recorded | unmatched else "duplicate"
                MESSAGES_CONSUMED.labels(self.name, envelope.type, outcome).inc()

        return MultiSourceMessageHandler.decorator(sources, max_batch=max_batch, max_wait_s=max_wait_s)(handle)

    return decorate
