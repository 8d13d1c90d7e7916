"""The notifications service: residents told what concerns them, in their language."""
from datetime import datetime, timezone

from contracts import RESIDENT_REGISTERED
from services.common.auth import Forbidden
from services.common.base import ServiceBase
from services.common.messaging import message_handler
from services.common.mongo import MongoDatabase
from services.common.web import api
from services.notifications.domain import render
from services.notifications.partners import PartnerFeeds

INBOX = "inbox"


class NotificationsService(ServiceBase, PartnerFeeds):
    name = "notifications"

    db = MongoDatabase("notifications")

    @message_handler("residents", RESIDENT_REGISTERED, batch=True)
    def welcome(self, envelopes):
        now = datetime.now(timezone.utc)
        items = []
        for envelope in envelopes:
            facts = envelope.data
            message = render("welcome", facts["preferred_language"], community_id=facts["community_id"])
            items.append({
                # One welcome per resident, whatever else happens upstream.
                "_id": f"welcome:{facts['resident_id']}",
                "resident_id": facts["resident_id"],
                "community_id": facts["community_id"],
                "kind": message.kind,
                "language": message.language,
                "title": message.title,
                "body": message.body,
                "fact_id": envelope.id,
                "created_at": now,
                "read_at": None,
            })
        self.db[INBOX].insert_many(items, session=self.db.session)

    @api("GET", "/residents/<resident_id>/inbox", scope="notifications:read")
    def inbox(self, request, resident_id):
        items = list(self.db[INBOX].find({"resident_id": resident_id}).sort("created_at", -1))
        if any(not request.principal.may_see(item["community_id"]) for item in items):
            raise Forbidden("this token does not cover this resident's community")
        return {
            "resident_id": resident_id,
            "items": [
                {
                    "id": item["_id"],
                    "kind": item["kind"],
                    "language": item["language"],
                    "title": item["title"],
                    "body": item["body"],
                    "created_at": item["created_at"].isoformat(),
                    "read": item["read_at"] is not None,
                }
                for item in items
            ],
        }
