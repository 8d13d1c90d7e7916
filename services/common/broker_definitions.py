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

from services.common.contract_docs import OUTSIDE, consumed, service_classes
from services.common.ingest import INGEST_EXCHANGE, REJECTED_QUEUE, UNROUTED_EXCHANGE, UNROUTED_QUEUE
from services.common.messaging import DEFAULT_RETRY_DELAYS_S, retry_queues

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
UNROUTED = "linli.unrouted"


def _exchange(name: str, kind: str, vhost: str) -> dict:
    return {"name": name, "vhost": vhost, "type": kind, "durable": True, "auto_delete": False, "internal": False,
            "arguments": {}}


def _queue(name: str, vhost: str, arguments: dict | None = None) -> dict:
    return {"name": name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": arguments or {}}


def _binding(source: str, queue: str, key: str, vhost: str) -> dict:
    return {"source": source, "vhost": vhost, "destination": queue, "destination_type": "queue",
            "routing_key": key, "arguments": {}}


def definitions(vhost: str = "/", delays=DEFAULT_RETRY_DELAYS_S) -> dict:
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


def render(vhost: str = "/") -> str:
    return json.dumps(definitions(vhost), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    DEFINITIONS.parent.mkdir(parents=True, exist_ok=True)
    DEFINITIONS.write_text(render(), encoding="utf-8")
    print(f"wrote {DEFINITIONS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
