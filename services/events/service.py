"""The events service: community events, registration, check-in and feedback.

The walking skeleton only runs the service; its domain arrives with issue #4.
"""
from services.common.base import ServiceBase
from services.common.mongo import MongoDatabase


class EventsService(ServiceBase):
    name = "events"

    db = MongoDatabase("events")
