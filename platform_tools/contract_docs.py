"""Writing and checking the generated contract documents (``make contracts``, ``make contracts-check``).

Who publishes a message type is its contract's ``producer``, checked against the services' code (every
``publish(<TYPE>, ...)`` call, see ``producers_disagreeing``); who consumes it is read from their
message-handler entrypoints, so the AsyncAPI document describes what the code does.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import sys
from pathlib import Path

import yaml

import contracts
from contracts import compat, documents
from contracts.registry import OUTSIDE, MessageType, registry
from platform_tools.platform import SERVICES

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "contracts" / "schemas"
RELEASED = ROOT / "contracts" / "released"
ASYNCAPI = ROOT / "contracts" / "asyncapi.yaml"
VERSION = "1.0.0"


def service_classes() -> dict[str, type]:
    return {name: getattr(importlib.import_module(f"services.{name}.service"), cls) for name, _, cls in SERVICES}


def published_constants(service: str) -> set[str]:
    """Names a service publishes: the first argument of ``publish(...)`` anywhere in its package, and
    the first element of ``(TYPE, data, ...)`` tuples in a module that stages them with ``stage_many``
    (when that name is a message type of contracts/)."""
    found = set()
    for path in (ROOT / "services" / service).glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        stages_many = any(isinstance(node, ast.Attribute) and node.attr == "stage_many" for node in ast.walk(tree))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Name):
                func = node.func
                # publish(...) and self.publish(...): the outbox's publish, not a raw broker publisher.
                through_dispatcher = (isinstance(func, ast.Name) and func.id == "publish") or (
                    isinstance(func, ast.Attribute) and func.attr == "publish"
                    and isinstance(func.value, ast.Name) and func.value.id == "self")
                if through_dispatcher:
                    found.add(node.args[0].id)
            elif (stages_many and isinstance(node, ast.Tuple) and node.elts and isinstance(node.elts[0], ast.Name)
                  and isinstance(getattr(contracts, node.elts[0].id, None), MessageType)):
                found.add(node.elts[0].id)
    return found


def published_types(service: str) -> list[MessageType]:
    """The message types a service publishes; raises if one is not a registered contract."""
    types = []
    for constant in sorted(published_constants(service)):
        value = getattr(contracts, constant, None)
        if not isinstance(value, MessageType) or value not in list(registry):
            raise LookupError(f"services/{service} publishes {constant}, which is not a message type in contracts/")
        types.append(value)
    return types


def consumed(service_cls) -> list[tuple[str, MessageType | None, str]]:
    """(source service, message type or None for "every type", queue) of each message handler;
    the source of what arrives through the ingest door is ``outside``."""
    from services.common.ingest_entrypoints import IngestConsumer
    from services.common.messaging import MessageHandler
    from services.common.multi_source import EveryMessageHandler, MultiSourceMessageHandler

    found = []
    for name, method in inspect.getmembers(service_cls, inspect.isfunction):
        for entrypoint in getattr(method, "nameko_entrypoints", ()):
            if isinstance(entrypoint, IngestConsumer):
                if entrypoint.message_type is not None:
                    found.append((OUTSIDE, entrypoint.message_type,
                                  f"linli-{service_cls.name}.ingest.{entrypoint.message_type.name}"))
            elif isinstance(entrypoint, EveryMessageHandler):
                found += [(source, None, f"linli-{service_cls.name}.{name}") for source in entrypoint.source_services]
            elif isinstance(entrypoint, MultiSourceMessageHandler):
                found += [(source, mt, f"linli-{service_cls.name}.{name}") for source, mt in entrypoint.sources]
            elif isinstance(entrypoint, MessageHandler):
                queue = f"evt-{entrypoint.source_service}-{entrypoint.message_type.name}--{service_cls.name}.{name}"
                found.append((entrypoint.source_service, entrypoint.message_type, queue))
    return found



def producers_disagreeing() -> list[str]:
    """Where the code and the contracts' ``producer`` disagree: a service publishing a type its contract
    gives to another, or a service not publishing (the latest version of) a type its contract gives it."""
    problems = []
    for service in service_classes():
        published = {mt.key for mt in published_types(service)}
        promised = {registry.get(mt.name).key for mt in registry if mt.producer == service}
        problems += [f"services/{service} publishes {name} v{version}, whose contract names another producer"
                     for name, version in sorted(published - promised)]
        problems += [f"the contract of {name} v{version} names {service} its producer, which does not publish it"
                     for name, version in sorted(promised - published)]
    return problems


def routes() -> list[documents.Route]:
    from contracts.ingest import INGEST_TYPES

    consumers = {service: consumed(cls) for service, cls in service_classes().items()}
    result = []
    for name in sorted(INGEST_TYPES):
        mt = registry.get(name)
        queues = tuple(sorted((service, queue) for service, handled in consumers.items()
                              for source, handled_type, queue in handled
                              if source == OUTSIDE and handled_type is not None and handled_type.name == name))
        result.append(documents.Route(mt, "linli.ingest", "outside-systems", queues))
    for mt in registry:
        if mt.on_the_bus:
            queues = tuple(sorted((service, queue) for service, handled in consumers.items()
                                  for source, handled_type, queue in handled
                                  if source == mt.producer and (handled_type is None or handled_type.name == mt.name)))
            result.append(documents.Route(mt, f"{mt.producer}.events", mt.producer, queues))
    return result


EXTRA_CHANNELS = {
    "linli.ingest.rejected": {
        "address": "linli.ingest.rejected",
        "description": ("Every message the ingest door refused, with its original bytes unchanged and headers "
                        "x-linli-ingest-errors (a JSON list of {code, field, message}), the sender and the "
                        "original routing key. Published through the default exchange; durable."),
    },
    "linli.ingest.unrouted": {
        "address": "linli.ingest.unrouted",
        "description": ("The alternate exchange (fanout) of linli.ingest: a message whose routing key no "
                        "service consumes lands here, and the residents service's gate rejects it with the "
                        "reason, so it ends on linli.ingest.rejected."),
    },
    "{reply_to}": {
        "address": "{reply_to}",
        "description": ("ingest.accepted replies, sent through the default exchange to the queue the sender "
                        "named in reply_to, with the sender's correlation_id."),
        "parameters": {"reply_to": {"description": "the sender's reply queue"}},
        "messages": {"ingest.accepted.v1": {"$ref": "#/components/messages/ingest.accepted.v1"}},
    },
    "linli.feeds/{partner}": {
        "address": "{partner}",
        "description": ("A partner department's feed: the durable queue linli.feed.<partner>, bound to the direct "
                        "exchange linli.feeds with the partner id. Each message is the platform's envelope, with "
                        "data.personal only where the partner's scope allows (see contracts/feeds.py). The "
                        "partner's own RabbitMQ user may read this queue and nothing else."),
        "parameters": {"partner": {"description": "the partner id, e.g. exit-entry"}},
        "bindings": {"amqp": {"is": "routingKey", "exchange": {"name": "linli.feeds", "type": "direct",
                                                               "durable": True, "autoDelete": False}}},
    },
    "linli.dead-letter/{queue}": {
        "address": "{queue}",
        "description": ("Messages a consumer could not handle, parked in <queue>.dead-letter with headers "
                        "x-linli-error, x-linli-consumer and x-linli-original-routing-key."),
        "parameters": {"queue": {"description": "the consumer's queue"}},
        "bindings": {"amqp": {"is": "routingKey", "exchange": {"name": "linli.dead-letter", "type": "direct",
                                                               "durable": True, "autoDelete": False}}},
    },
}


def generated() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {SCHEMAS / documents.file_name(mt): _json(documents.json_schema(mt)) for mt in documents.all_types()}
    files[SCHEMAS / "envelope.json"] = _json(documents.envelope_schema())
    files[ASYNCAPI] = "# Generated by `make contracts` from contracts/ and the services' code; do not edit.\n" + \
        yaml.safe_dump(documents.asyncapi(routes(), EXTRA_CHANNELS, VERSION,
                                          extra_messages=[registry.get("ingest.accepted")]),
                       allow_unicode=True, sort_keys=False, width=120)
    return files


def _json(document: dict) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False) + "\n"


def write() -> int:
    SCHEMAS.mkdir(parents=True, exist_ok=True)
    wanted = generated()
    for stale in set(SCHEMAS.glob("*.json")) - set(wanted):
        stale.unlink()
    for path, content in wanted.items():
        path.write_text(content, encoding="utf-8")
    print(f"wrote {len(wanted)} files under contracts/")
    return 0


def check(released: Path = RELEASED, current: Path = SCHEMAS) -> int:
    for problem in producers_disagreeing():
        print(f"PRODUCER: {problem}", file=sys.stderr)
    if producers_disagreeing():
        return 1
    problems = compat.check_directory(released, current)
    for problem in problems:
        print(f"BREAKING: {problem}", file=sys.stderr)
    if problems:
        print("A breaking change needs a new version of the type (and consumers that handle both).",
              file=sys.stderr)
        return 1
    print(f"contracts compatible with the released set ({len(list(released.glob('*.json')))} schemas)")
    return 0


def release() -> int:
    RELEASED.mkdir(parents=True, exist_ok=True)
    for path in SCHEMAS.glob("*.json"):
        (RELEASED / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    print(f"released {len(list(SCHEMAS.glob('*.json')))} schemas into contracts/released/")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=("write", "check", "release"))
    args = parser.parse_args(argv)
    return {"write": write, "check": check, "release": release}[args.action]()


if __name__ == "__main__":
    sys.exit(main())
