"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it is sent: the portal's and reconcile's mail."""

from __future__ import annotations

import socket
import time
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from typing import Iterator

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """aiosmtpd handler: keeps every message, and who logged in to send it (`login`/`password`, if any)."""

    def __init__(self, login: str = "", password: str = ""):
        self.messages: list[Message] = []
        self.logins: list[str] = []
        self.login, self.password = login, password

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == self.login.encode() and auth_data.password == self.password.encode()
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    def wait(self, count: int, timeout: float = 10) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{count} email(s) expected, {len(self.messages)} came"
            time.sleep(0.05)
        return self.messages

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


@contextmanager
def running_inbox(login: str = "", password: str = "") -> Iterator[tuple[Inbox, int]]:
    """The server, listening on a free loopback port, for the block: (its inbox, the port)."""
    inbox, port = Inbox(login, password), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=inbox.authenticate,
                            auth_require_tls=False)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def body(message: Message) -> str:
    return message.get_payload(decode=True).decode()
