"""Real servers on loopback for the notification channels: SMTP (aiosmtpd) and an SMS gateway (HTTP)."""
from __future__ import annotations

import json
import mailbox
import socket
import subprocess
import sys
import time
from pathlib import Path

import eventlet
from eventlet import wsgi


class SmtpServer:
    """aiosmtpd in its own process, storing what arrives in a Maildir the test reads."""

    def __init__(self, port: int, maildir: Path):
        self.port, self.maildir, self.process = port, maildir, None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}",
             "-c", "aiosmtpd.handlers.Mailbox", str(self.maildir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", self.port)) != 0:
            assert self.process.poll() is None and time.monotonic() < deadline, "aiosmtpd did not start"
            time.sleep(0.1)

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def messages(self) -> list:
        return list(mailbox.Maildir(self.maildir, create=True))


class SmsGateway:
    """An SMS provider's HTTP API: answers ``answers`` in turn (then 200) and records each request."""

    def __init__(self, port: int):
        self.port = port
        self.received: list[dict] = []
        self.answers: list[int] = []
        self._server = None

    def app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        status = self.answers.pop(0) if self.answers else 200
        self.received.append({"status": status, **body})
        start_response(f"{status} X", [("Content-Type", "application/json")])
        return [json.dumps({"accepted": status == 200}).encode()]

    def start(self):
        listener = eventlet.listen(("127.0.0.1", self.port))
        self._server = eventlet.spawn(wsgi.server, listener, self.app, log_output=False)

    def stop(self):
        if self._server is not None:
            self._server.kill()

    @property
    def delivered(self) -> list[dict]:
        return [r for r in self.received if r["status"] == 200]
