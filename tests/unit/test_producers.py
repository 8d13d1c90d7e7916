"""Each message type's contract names its producer; consumers, reports and partner feeds take the source
from there, so a new type from a new service needs no list edited."""
import pytest
from marshmallow import Schema, fields

from contracts import RESIDENT_FORM_SUBMITTED, RESIDENT_REGISTERED, ContractError, registry
from contracts.registry import INGEST_DOOR, OUTSIDE, Registry
from platform_tools import contract_docs
from services.common.messaging import message_handler
from services.partners import feeds
from services.reports import service as reports


class Note(Schema):
    text = fields.String()


def _platform_with_a_new_service() -> Registry:
    """The registered types, plus a new service's ``case.opened`` and a new residents type."""
    types = Registry()
    for message_type in registry:
        types.register(message_type)
    types.define("case.opened", 1, Note, "A resident's case was opened.", {}, producer="cases")
    types.define("resident.thanked", 1, Note, "A resident was thanked.", {}, producer="residents")
    return types


def test_every_registered_type_names_its_producer():
    assert {t.producer for t in registry} == {"residents", "events", "notifications", "reports", "cases", OUTSIDE,
                                              INGEST_DOOR}
    assert RESIDENT_REGISTERED.producer == "residents" and RESIDENT_REGISTERED.on_the_bus
    assert RESIDENT_FORM_SUBMITTED.producer == OUTSIDE and not RESIDENT_FORM_SUBMITTED.on_the_bus


def test_a_new_producer_is_a_source_of_everything_without_editing_a_list():
    assert reports.SOURCES == registry.producers(besides="reports") == ("cases", "events", "notifications",
                                                                         "residents")
    assert _platform_with_a_new_service().producers(besides="reports") == (
        "cases", "events", "notifications", "residents")


def test_partner_feeds_take_each_types_source_from_its_contract():
    offered = dict((t.name, source) for source, t in feeds.partner_feed_types(_platform_with_a_new_service()))
    assert offered["resident.thanked"] == "residents" and offered["registration.promoted"] == "events"
    # Not residents' or events' facts: the new service's, the platform's counts, and what outside systems send.
    assert not {"case.opened", "notification.outcomes", "resident.form_submitted", "event.proposed"} & set(offered)


def test_a_handler_binds_the_exchange_of_the_types_producer():
    def handler(self, envelope):
        """A handler."""

    (entrypoint,) = message_handler(RESIDENT_REGISTERED)(handler).nameko_entrypoints
    assert (entrypoint.source_service, entrypoint.message_type) == ("residents", RESIDENT_REGISTERED)
    (stand_in,) = message_handler(RESIDENT_REGISTERED, source="producer")(handler).nameko_entrypoints
    assert stand_in.source_service == "producer"
    with pytest.raises(ContractError, match="not published on the bus"):
        message_handler(RESIDENT_FORM_SUBMITTED)


def test_the_contracts_producers_are_what_the_code_publishes(monkeypatch):
    assert contract_docs.producers_disagreeing() == []
    real = contract_docs.published_types
    moved = {"events": lambda types: types + [RESIDENT_REGISTERED],
             "residents": lambda types: [t for t in types if t is not RESIDENT_REGISTERED]}
    monkeypatch.setattr(contract_docs, "published_types",
                        lambda service: moved.get(service, lambda types: types)(real(service)))
    assert contract_docs.producers_disagreeing() == [
        "the contract of resident.registered v1 names residents its producer, which does not publish it",
        "services/events publishes resident.registered v1, whose contract names another producer"]
