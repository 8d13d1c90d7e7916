"""Push channels: email over SMTP and SMS through an HTTP gateway, behind one interface.

``send(address, message)`` returns on success and raises ``ChannelError``
otherwise; ``permanent`` tells the caller that trying again cannot help (a
refused address) as opposed to a server that is down or busy.
"""
from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

import requests
from nameko.extensions import DependencyProvider


SMTP_POLICY = SMTP.clone(max_line_length=998)


class ChannelError(Exception):
    def __init__(self, reason: str, permanent: bool = False):
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True)
class Outgoing:
    delivery_id: str
    title: str
    body: str
    unsubscribe_url: str | None = None


class EmailChannel:
    def __init__(self, host: str, port: int, sender: str, starttls: bool = False,
                 username: str | None = None, password: str | None = None, timeout_s: float = 10):
        self.host, self.port, self.sender = host, port, sender
        self.starttls, self.username, self.password, self.timeout_s = starttls, username, password, timeout_s

    def send(self, address: str, outgoing: Outgoing) -> None:
        # Long header lines as they are (RFC 5322 allows 998): folding the
        # unsubscribe URL would turn it into encoded words no client follows.
        mail = EmailMessage(policy=SMTP_POLICY)
        mail["From"] = self.sender
        mail["To"] = address
        mail["Subject"] = outgoing.title
        mail["Date"] = formatdate(localtime=False)
        # The delivery id: a retried delivery is recognisably the same mail.
        mail["Message-ID"] = f"<{outgoing.delivery_id}@linli>"
        if outgoing.unsubscribe_url:
            mail["List-Unsubscribe"] = f"<{outgoing.unsubscribe_url}>"
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
        mail.set_content(outgoing.body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise ChannelError(f"SMTP refused the recipient: {_codes(exc.recipients)}", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            raise ChannelError(f"SMTP {exc.smtp_code}", permanent=500 <= exc.smtp_code < 600) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise ChannelError(f"SMTP server unreachable: {type(exc).__name__}") from None


def _codes(refused: dict) -> str:
    return ", ".join(str(code) for code, _ in refused.values())


class SmsGateway:
    """An SMS provider's HTTP API: ``POST {url}`` with ``{"to", "text", "reference"}`` and a bearer token."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 10):
        self.url, self.token, self.timeout_s = url, token, timeout_s

    def send(self, address: str, outgoing: Outgoing) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        text = f"{outgoing.title}\n{outgoing.body}"
        try:
            response = requests.post(self.url, json={"to": address, "text": text, "reference": outgoing.delivery_id},
                                     headers=headers, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise ChannelError(f"SMS gateway unreachable: {type(exc).__name__}") from None
        if response.status_code >= 400:
            permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
            raise ChannelError(f"SMS gateway answered {response.status_code}", permanent=permanent)


class Unconfigured:
    def __init__(self, channel: str):
        self.channel = channel

    def send(self, address: str, outgoing: Outgoing) -> None:
        raise ChannelError(f"the {self.channel} channel is not configured on this server", permanent=True)


class Channels(DependencyProvider):
    """The push channels configured for this service (``SMTP_*``, ``SMS_GATEWAY_*``)."""

    def setup(self):
        config = self.container.config
        self.channels = {"email": Unconfigured("email"), "sms": Unconfigured("sms")}
        if config.get("SMTP_HOST"):
            self.channels["email"] = EmailChannel(
                config["SMTP_HOST"], int(config.get("SMTP_PORT") or 25),
                config.get("SMTP_SENDER") or "linli@localhost", starttls=bool(config.get("SMTP_STARTTLS")),
                username=config.get("SMTP_USERNAME") or None, password=config.get("SMTP_PASSWORD") or None)
        if config.get("SMS_GATEWAY_URL"):
            self.channels["sms"] = SmsGateway(config["SMS_GATEWAY_URL"], config.get("SMS_GATEWAY_TOKEN") or None)

    def get_dependency(self, worker_ctx):
        return self.channels
