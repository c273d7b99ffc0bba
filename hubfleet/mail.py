"""Email out through the site's SMTP server: the portal's notices to teachers and reconcile's to a course's
contacts. Plain text, one message at a time; a server that fails is logged (never a secret), never raised.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from pydantic import Field, model_validator

from hubfleet.descriptor import Strict

log = logging.getLogger("hubfleet.mail")


class SmtpSettings(Strict):
    host: str = Field(description="SMTP server, e.g. smtp.example.edu.")
    port: int = Field(587, ge=1, le=65535, description="SMTP port (587 with starttls, 25 without).")
    sender: str = Field(description="From address, e.g. hubfleet@example.edu.")
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS before sending.")
    user: str | None = Field(None, description="Login name, when the server wants one.")
    password_file: Path | None = Field(None, description="File holding the SMTP password (mode 0600).")
    timeout: float = Field(15, gt=0, le=300, description="Seconds to wait for the server.")

    @model_validator(mode="after")
    def _login(self) -> "SmtpSettings":
        if self.user and not self.password_file:
            raise ValueError("smtp.user is set but smtp.password_file is not — give the file holding the password")
        return self


class Mailer:
    def __init__(self, settings: SmtpSettings | None):
        self.settings = settings

    def _password(self) -> str | None:
        path = self.settings.password_file if self.settings else None
        return path.read_text().strip() if path else None

    def send(self, to: list[str], subject: str, body: str) -> bool:
        """Send one plain-text message; False (and a log line without secrets) when it could not go."""
        settings = self.settings
        if settings is None or not to:
            return False
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = settings.sender, ", ".join(to), subject
        message["Date"], message["Message-ID"] = formatdate(localtime=False), make_msgid(domain="hubfleet")
        message.set_content(body)
        try:
            with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
                if settings.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if settings.user:
                    smtp.login(settings.user, self._password() or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("could not send %r to %d recipient(s) via %s:%s: %s", subject, len(to), settings.host,
                        settings.port, type(exc).__name__)
            return False
        log.info("sent %r to %d recipient(s)", subject, len(to))
        return True
