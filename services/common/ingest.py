"""The ingest door: what internal systems of the city send into Linli, checked and never lost.

Generic, no domain rules. ``check_body`` validates one message as it arrived
(bytes, content type, routing key) and raises ``IngestRejected`` with *every*
error it finds (a body that is not UTF-8 JSON, or holds a lone surrogate, which
no store takes, is refused at once; an envelope without ``dataschema``, optional
in CloudEvents 1.0, is read as the latest version of its type);
``ingest_handler(message_type)`` consumes that type from ``linli.ingest`` (raw
bytes, not nameko's decoder, so a body that is not JSON is parked rather than
crashing the consumer); ``unrouted_gate()`` consumes what
nobody binds. A rejected message is published with confirms to the durable
queue ``linli.ingest.rejected`` with its original body bytes and these headers:

- ``x-linli-ingest-errors``: a JSON array of ``{"code", "field", "message"}``
- ``x-linli-ingest-status``: 400, 413 or 415 (as the HTTP door would answer)
- ``x-linli-sender-app-id``, ``x-linli-sender-user-id``, ``x-linli-sender-source``
- ``x-linli-original-exchange``, ``x-linli-original-routing-key``, ``x-linli-original-content-type``
- ``x-linli-rejected-by`` (service) and ``x-linli-rejected-at``

then acked. Bodies are never logged: a form row holds names and document numbers.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from kombu import Connection, Exchange, Queue
from marshmallow import ValidationError
from nameko.amqp.publish import Publisher
from prometheus_client import Counter

from contracts import ContractError, Envelope, MessageType, registry
from contracts.envelope import EnvelopeSchema
from contracts.ingest import INGEST_CONTENT_TYPES, INGEST_TYPES, MAX_INGEST_BYTES
from services.common.inputs import NOT_TEXT, paths, storable, unstorable_text
from services.common.queue_type import durable_queue
from services.common.races import retried

log = logging.getLogger(__name__)

UNROUTED_EXCHANGE = Exchange("linli.ingest.unrouted", type="fanout", durable=True)
INGEST_EXCHANGE = Exchange("linli.ingest", type="topic", durable=True,
                           arguments={"alternate-exchange": UNROUTED_EXCHANGE.name})
UNROUTED_QUEUE = durable_queue(Queue("linli.ingest.unrouted", exchange=UNROUTED_EXCHANGE, durable=True))
REJECTED_QUEUE = durable_queue(Queue("linli.ingest.rejected", durable=True))  # published to through the default exchange
INGEST_RECORDS = "ingest_records"
PERSISTENT = 2
MAX_REPORTED_ERRORS = 100
_ENVELOPE_SCHEMA = EnvelopeSchema()  # reused: a schema is made once, not per message

INGEST_MESSAGES = Counter(
    "linli_ingest_messages_total",
    "Messages from internal systems, by service, ingest type (unknown for any other) and outcome.",
    ["service", "type", "outcome"],
)


def type_label(type_name) -> str:
    """A bounded metric label: an ingest type's name, else ``unknown``."""
    return type_name if type_name in INGEST_TYPES else "unknown"


def declared(body: bytes, attribute: str) -> str | None:
    """An envelope attribute (``type``, ``source``) of a body, if it can be read at all."""
    try:
        value = json.loads(body).get(attribute)
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    return value[:200] if isinstance(value, str) and storable(value) else None


def declare_topology(amqp_uri: str, *queues: Queue) -> None:
    """The ingest exchanges, the unrouted and rejected queues, and ``queues``: before the first message."""
    with Connection(amqp_uri) as connection:
        channel = connection.default_channel
        for entity in (UNROUTED_EXCHANGE, INGEST_EXCHANGE, UNROUTED_QUEUE, REJECTED_QUEUE, *queues):
            entity.bind(channel).declare()


def error(code: str, field: str | None, message: str) -> dict:
    return {"code": code, "field": field, "message": message}


class IngestRejected(Exception):
    """A message Linli will not process, with every reason; ``status`` as the HTTP door answers it."""

    status = 400

    def __init__(self, errors: list[dict], status: int = 400):
        self.errors = errors[:MAX_REPORTED_ERRORS]
        self.status = status
        # Codes and field names only: the messages may quote what the sender wrote (never logged).
        super().__init__(", ".join(f"{e['code']} ({e['field'] or 'message'})" for e in self.errors))

    @property
    def codes(self) -> list[str]:
        return sorted({e["code"] for e in self.errors})


def flatten(messages, prefix: str = ""):
    """marshmallow's nested error messages as ``(field path, text)`` pairs."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            path = prefix.rstrip(".") if key == "_schema" else f"{prefix}{key}"
            yield from flatten(value, f"{path}." if path else "")
    elif isinstance(messages, (list, tuple)):
        for item in messages:
            yield from flatten(item, prefix)
    else:
        yield prefix.rstrip(".") or None, str(messages)


ROW_FIELD = "data.row"  # where a collection form's row travels (resident.form_submitted), cell by cell


def _text_code(path: str) -> str:
    """A form row's cell is an ``invalid_row`` like any other bad cell; elsewhere, ``invalid_text``."""
    return "invalid_row" if path.startswith(ROW_FIELD + ".") else "invalid_text"


def check_body(body: bytes, content_type: str | None, routing_key: str | None = None) -> Envelope:
    """The envelope of an ingest message, or ``IngestRejected`` naming every problem found."""
    if len(body) > MAX_INGEST_BYTES:
        raise IngestRejected([error("body_too_large", None,
                                    f"the body is {len(body)} bytes; the limit is {MAX_INGEST_BYTES}")], 413)
    errors, status = [], 400
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in INGEST_CONTENT_TYPES:
        errors.append(error("unsupported_content_type", None,
                            f"content type {(content_type or '')[:80]!r} is not one of {', '.join(INGEST_CONTENT_TYPES)}"))
        status = 415
    try:
        wire = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise IngestRejected(errors + [error("invalid_json", None, f"the body is not UTF-8 JSON: {exc}")], status)
    if not isinstance(wire, dict):
        raise IngestRejected(errors + [error("not_an_object", None, "the body must be a JSON object (an envelope)")],
                             status)
    if unstorable := unstorable_text(wire):  # refused now: no replay could ever store it
        raise IngestRejected(errors + [error(_text_code(path), path, NOT_TEXT) for path in paths(unstorable)], status)
    wire = with_dataschema(wire)
    try:  # every field checked once: the envelope is made of what was loaded here
        attrs = _ENVELOPE_SCHEMA.load(wire)
    except ValidationError as exc:
        attrs = None
        errors += [error("invalid_envelope", path, text) for path, text in flatten(exc.messages)]
    data_errors, data = _type_and_data(wire, routing_key)
    errors += data_errors
    if errors:
        raise IngestRejected(errors, status)
    return Envelope(**{**attrs, "data": data})


def with_dataschema(wire: dict) -> dict:
    """The envelope with the ``dataschema`` of its type's latest version if it has none: CloudEvents 1.0
    makes the attribute optional, and a producer built from a CloudEvents SDK alone leaves it out.
    One that is given must still match the type (``unknown_version``)."""
    type_name = wire.get("type")
    if wire.get("dataschema") is not None or not isinstance(type_name, str) or type_name not in INGEST_TYPES:
        return wire
    return {**wire, "dataschema": registry.get(type_name).dataschema}


def _type_and_data(wire: dict, routing_key: str | None) -> tuple[list[dict], dict | None]:
    """The errors of the envelope's type and data, and its data as its contract loads it."""
    type_name = wire.get("type")
    if not isinstance(type_name, str):
        return [], None  # the envelope check names it
    errors = []
    if routing_key is not None and routing_key != type_name:
        errors.append(error("routing_key_mismatch", "type",
                            f"routing key {routing_key[:100]!r} differs from the type {type_name[:100]!r}"))
    if type_name not in INGEST_TYPES:
        return errors + [error("unknown_type", "type", f"{type_name[:100]!r} is not a type internal systems may "
                                                       f"send; send one of {', '.join(sorted(INGEST_TYPES))}")], None
    versions = {t.dataschema: t for t in registry if t.name == type_name}
    dataschema = wire.get("dataschema")
    message_type = versions.get(dataschema) if isinstance(dataschema, str) else None  # a list is unhashable
    if message_type is None:
        return errors + [error("unknown_version", "dataschema", f"dataschema must be one of {sorted(versions)}")], None
    try:
        return errors, message_type.load(wire.get("data"))
    except ContractError as exc:
        return errors + [error("invalid_data", f"data.{path}" if path else "data", text)
                         for path, text in flatten(getattr(exc, "errors", {"_schema": [str(exc)]}))], None


def rejected_from_validation(exc: ValidationError, prefix: str = "data.") -> IngestRejected:
    """A domain schema's refusal (``ValidationError``) as an ingest rejection naming every field."""
    return IngestRejected([error("invalid_data", f"{prefix}{path}" if path else prefix.rstrip("."), text)
                           for path, text in flatten(exc.normalized_messages())])


class Rejections:
    """Parks refused messages on ``linli.ingest.rejected``: original bytes, reasons in headers, confirmed."""

    def __init__(self, amqp_uri: str, service: str):
        self.service = service
        self.publisher = Publisher(amqp_uri, use_confirms=True, mandatory=True, delivery_mode=PERSISTENT)

    def park(self, body: bytes, properties: dict, delivery_info: dict, rejected: IngestRejected) -> None:
        headers = {
            "x-linli-ingest-errors": json.dumps(rejected.errors, ensure_ascii=False),
            "x-linli-ingest-status": rejected.status,
            "x-linli-sender-app-id": properties.get("app_id") or "",
            "x-linli-sender-user-id": properties.get("user_id") or "",
            "x-linli-sender-source": declared(body, "source") or "",
            "x-linli-original-exchange": delivery_info.get("exchange") or "",
            "x-linli-original-routing-key": delivery_info.get("routing_key") or "",
            "x-linli-original-content-type": properties.get("content_type") or "",
            "x-linli-rejected-by": self.service,
            "x-linli-rejected-at": datetime.now(timezone.utc).isoformat(),
        }
        extra = {k: properties[k] for k in ("message_id", "correlation_id", "app_id") if properties.get(k)}
        self.publisher.publish(body, exchange="", routing_key=REJECTED_QUEUE.name, headers=headers,
                               content_type="application/octet-stream", content_encoding="binary", **extra)
        log.warning("%s: rejected an ingest message (routing key %s): %s", self.service,
                    type_label(delivery_info.get("routing_key")), ", ".join(rejected.codes))


def once_each(database, envelopes: list[Envelope], effect, transaction=None) -> list:
    """For each envelope, in order, its result: ``effect(session, fresh)`` decides those not seen before
    (one ``dict`` or ``IngestRejected`` each), in one transaction with the records of the results (a
    rejected one is not recorded: sent again, it is judged again); one seen before (or twice in the
    batch) gets the stored result. ``transaction(work)``: how to run ``work(session)`` in a transaction
    (the outbox's, so what ``effect`` publishes is sent after the commit); by default a session of
    ``database``'s own. Two batches racing for one message, or a unique key, try again: then they see it."""
    records = database[INGEST_RECORDS]
    keys = [f"{envelope.source}|{envelope.id}" for envelope in envelopes]

    def run(attempt: int) -> list:
        known = _stored_results(records, keys)
        firsts = {key: envelope for key, envelope in zip(keys, envelopes) if key not in known}
        decided = _decide(records, list(firsts.items()), effect, transaction or _own_transaction(database))
        return [known[key] if key in known else decided[key] for key in keys]

    return retried(run)


def _stored_results(records, keys: list[str]) -> dict:
    found = records.find({"_id": {"$in": sorted(set(keys))}}, {"result": 1}).batch_size(len(keys) + 1)  # no getMore
    return {doc["_id"]: doc["result"] for doc in found}


def _own_transaction(database):
    def run(work):
        with database.client.start_session() as session:
            return session.with_transaction(work)
    return run


def _decide(records, fresh: list[tuple[str, Envelope]], effect, transaction) -> dict:
    if not fresh:
        return {}

    def work(session):
        results = effect(session, [envelope for _, envelope in fresh])
        now = datetime.now(timezone.utc)
        kept = [{"_id": key, "type": envelope.type, "result": result, "at": now}
                for (key, envelope), result in zip(fresh, results) if not isinstance(result, IngestRejected)]
        if kept:
            records.insert_many(kept, session=session)
        return {key: result for (key, _), result in zip(fresh, results)}

    return transaction(work)


def queue_for(service: str, message_type: MessageType) -> Queue:
    """The service's durable queue of one ingest type on ``linli.ingest``."""
    return durable_queue(Queue(f"linli-{service}.ingest.{message_type.name}", exchange=INGEST_EXCHANGE,
                               routing_key=message_type.name, durable=True))
