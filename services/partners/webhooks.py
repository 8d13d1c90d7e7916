"""Sending one signed webhook, per the Standard Webhooks spec (https://www.standardwebhooks.com).

Headers: ``webhook-id`` (the envelope id: the same on every retry and replay,
so the receiver can deduplicate), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256 of id.timestamp.body>``), made
with the ``standardwebhooks`` reference implementation receivers verify with.
"""
from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

import requests
from standardwebhooks import Webhook

from services.partners.feeds import parse_retry_after

CONTENT_TYPE = "application/cloudevents+json"


def new_secret() -> str:
    """A signing secret in the spec's format: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class WebhookOutcome:
    delivered: bool
    gone: bool = False  # HTTP 410: the receiver wants no more
    error: str | None = None
    retry_after_s: float | None = None


def send(url: str, secret: str, envelope: dict, timeout_s: float) -> WebhookOutcome:
    body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
    timestamp = datetime.now(timezone.utc)
    headers = {
        "content-type": CONTENT_TYPE,
        "webhook-id": envelope["id"],
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(envelope["id"], timestamp, body),
    }
    try:
        # No redirects: a redirect could lead past the address checks to a private host.
        response = requests.post(url, data=body.encode(), headers=headers, timeout=timeout_s, allow_redirects=False)
    except requests.RequestException as exc:
        return WebhookOutcome(False, error=f"{type(exc).__name__}: {exc}")
    if 200 <= response.status_code < 300:
        return WebhookOutcome(True)
    if response.status_code == 410:
        return WebhookOutcome(False, gone=True, error="HTTP 410 Gone: the endpoint asked for no more deliveries")
    return WebhookOutcome(False, error=f"HTTP {response.status_code}",
                          retry_after_s=parse_retry_after(response.headers.get("Retry-After")))
