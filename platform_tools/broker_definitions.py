"""The RabbitMQ topology every service needs, as a definitions file (``make definitions``).

Importing ``deploy/rabbitmq/definitions.json`` (``rabbitmqctl import_definitions``
or the management API) declares every exchange, queue (with its dead-letter and
retry queues) and binding before any service starts, so nothing published early
is lost; and a policy gives each service exchange an alternate exchange, so a
message whose routing key no queue is bound to is parked in ``linli.unrouted``
instead of being dropped by the broker.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from platform_tools.contract_docs import OUTSIDE, consumed, service_classes
from services.common.ingest import INGEST_EXCHANGE, REJECTED_QUEUE, UNROUTED_EXCHANGE, UNROUTED_QUEUE
from services.common.messaging import DEFAULT_RETRY_DELAYS_S, retry_queues
from services.common.queue_type import queue_type_arguments

ROOT = Path(__file__).resolve().parents[1]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
QUORUM_DEFINITIONS = ROOT / "deploy" / "k8s" / "rabbitmq" / "definitions.json"
POISON = "linli.poison"
POISON_DELIVERY_LIMIT = 20
UNROUTED = "linli.unrouted"


def _exchange(name: str, kind: str, vhost: str) -> dict:
    return {"name": name, "vhost": vhost, "type": kind, "durable": True, "auto_delete": False, "internal": False,
            "arguments": {}}


def _queue(name: str, vhost: str, arguments: dict | None = None) -> dict:
    return {"name": name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": arguments or {}}


def _binding(source: str, queue: str, key: str, vhost: str) -> dict:
    return {"source": source, "vhost": vhost, "destination": queue, "destination_type": "queue",
            "routing_key": key, "arguments": {}}


def definitions(vhost: str = "/", delays=DEFAULT_RETRY_DELAYS_S, queue_type: str = "classic") -> dict:
    """The topology; ``queue_type="quorum"`` for a cluster whose services run with LINLI_QUEUE_TYPE=quorum."""
    document = _definitions(vhost, delays)
    return _as_quorum(document, vhost) if queue_type == "quorum" else document


def _as_quorum(document: dict, vhost: str) -> dict:
    """Every queue a quorum queue; and a message redelivered ``POISON_DELIVERY_LIMIT`` times (its
    consumer dies handling it, again and again) is dead-lettered to ``linli.poison``, not looped forever."""
    queues = [{**q, "arguments": {**q["arguments"], **queue_type_arguments("quorum")}}
              for q in document["queues"] + [_queue(POISON, vhost)]]
    bindings = document["bindings"] + [_binding("linli.dead-letter", POISON, POISON, vhost)]
    # Consumers' queues only: the retry queues dead-letter by their own arguments, and parked messages stay.
    poison = {"vhost": vhost, "name": "linli-poison", "apply-to": "queues", "priority": 0,
              "pattern": r"^(evt-|linli-|rpc-)(?!.*\.(dead-letter|retry\.[0-9]+ms)$)",
              "definition": {"delivery-limit": POISON_DELIVERY_LIMIT, "dead-letter-exchange": "linli.dead-letter",
                             "dead-letter-routing-key": POISON}}
    return {**document, "queues": sorted(queues, key=lambda q: q["name"]),
            "bindings": sorted(bindings, key=lambda b: (b["source"], b["destination"], b["routing_key"])),
            "policies": document["policies"] + [poison]}


def _definitions(vhost: str, delays) -> dict:
    classes = service_classes()
    exchanges = [_exchange(f"{name}.events", "topic", vhost) for name in classes]
    exchanges += [_exchange("linli.dead-letter", "direct", vhost), _exchange(UNROUTED, "fanout", vhost)]
    # The ingest door (services/common/ingest.py): its exchange names its alternate exchange itself.
    exchanges += [{**_exchange(INGEST_EXCHANGE.name, "topic", vhost), "arguments": dict(INGEST_EXCHANGE.arguments)},
                  _exchange(UNROUTED_EXCHANGE.name, "fanout", vhost)]
    queues = [_queue(UNROUTED, vhost), _queue(UNROUTED_QUEUE.name, vhost), _queue(REJECTED_QUEUE.name, vhost)]
    bindings = [_binding(UNROUTED, UNROUTED, "", vhost), _binding(UNROUTED_EXCHANGE.name, UNROUTED_QUEUE.name, "", vhost)]
    for cls in classes.values():
        for source, message_type, queue in consumed(cls):
            key = "#" if message_type is None else message_type.name
            if source == OUTSIDE:  # rejects go to linli.ingest.rejected, not a dead-letter queue
                bindings.append(_binding(INGEST_EXCHANGE.name, queue, key, vhost))
                queues.append(_queue(queue, vhost))
                continue
            bindings.append(_binding(f"{source}.events", queue, key, vhost))
            if any(q["name"] == queue for q in queues):
                continue
            queues.append(_queue(queue, vhost))
            queues.append(_queue(f"{queue}.dead-letter", vhost))
            bindings.append(_binding("linli.dead-letter", f"{queue}.dead-letter", queue, vhost))
            queues += [_queue(q.name, vhost, q.queue_arguments) for q in retry_queues(queue, delays)]
    pattern = "^(" + "|".join(classes) + r")\.events$"
    policies = [{"vhost": vhost, "name": "linli-unrouted", "pattern": pattern, "apply-to": "exchanges",
                 "priority": 0, "definition": {"alternate-exchange": UNROUTED}}]
    return {"rabbit_version": "3.12", "vhosts": [{"name": vhost}], "exchanges": exchanges,
            "queues": sorted(queues, key=lambda q: q["name"]),
            "bindings": sorted(bindings, key=lambda b: (b["source"], b["destination"], b["routing_key"])),
            "policies": policies}


def render(vhost: str = "/", queue_type: str = "classic") -> str:
    return json.dumps(definitions(vhost, queue_type=queue_type), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    for path, queue_type in ((DEFINITIONS, "classic"), (QUORUM_DEFINITIONS, "quorum")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(queue_type=queue_type), encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
