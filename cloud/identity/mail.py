"""Outgoing email (password reset codes, security notifications) through a configured SMTP server.

Configuration, in ``config.toml``::

    [smtp]
    host = "mail.example.org"
    port = 587
    sender = "AssetBook <no-reply@example.org>"
    starttls = true

Contract: :meth:`Mailer.enqueue` never blocks and never raises, and may be called from any
thread: requests must not take longer (or fail) depending on whether a mail was sent, or
the timing would tell an attacker which accounts exist. :meth:`Mailer.serve` sends queued
messages one by one with :mod:`smtplib` in a worker thread. Without an ``[smtp]`` section
mail is dropped and the drop is written to the access log (never the body: it may hold a
reset code). A full queue drops the newest message, also logged.

Not done here: SMTP authentication (use a local relay that needs none, or an allow-listed
address), retries across restarts, and HTML mail.
"""

from __future__ import annotations

import smtplib
import ssl
import tomllib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING

import trio

from cloud.errors import ConfigError

if TYPE_CHECKING:
    from cloud.accesslog import AccessLog
    from cloud.home import CoreHome

QUEUE_MESSAGES = 256
SEND_TIMEOUT_S = 30


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    starttls: bool = True


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    body: str


def load_smtp_config(home: CoreHome) -> SmtpConfig | None:
    """The ``[smtp]`` section of ``config.toml``, or None when there is none.

    Raises:
        ConfigError: the section is malformed.
    """
    try:
        data = tomllib.loads(home.config_path.read_text(encoding="utf-8")).get("smtp")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config: {exc}", key="config.toml") from exc
    if data is None:
        return None
    try:
        config = SmtpConfig(
            host=data["host"],
            port=data["port"],
            sender=data["sender"],
            starttls=data.get("starttls", True),
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError("needs host, port and sender", key="smtp") from exc
    if not isinstance(config.port, int) or not 0 < config.port < 65536:
        raise ConfigError("must be a port number", key="smtp.port")
    if not isinstance(config.starttls, bool):
        raise ConfigError("must be true or false", key="smtp.starttls")
    return config


class Mailer:
    """A bounded queue of mails and the task that sends them."""

    def __init__(self, config: SmtpConfig | None, access_log: AccessLog) -> None:
        self.config = config
        self.access_log = access_log
        self._send, self._receive = trio.open_memory_channel[Mail](QUEUE_MESSAGES)
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self.sent = 0

    def enqueue(self, mail: Mail) -> None:
        """Queue ``mail`` for sending (thread-safe, non-blocking)."""
        if self.config is None or self._trio_token is None:
            self.access_log.record("mail.dropped", reason="smtp not configured")
            return
        try:
            self._trio_token.run_sync_soon(self._put, mail)
        except trio.RunFinishedError:
            self.access_log.record("mail.dropped", reason="core stopping")

    def _put(self, mail: Mail) -> None:
        try:
            self._send.send_nowait(mail)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.access_log.record("mail.dropped", reason="queue full")

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued mail until cancelled."""
        self._trio_token = trio.lowlevel.current_trio_token()
        task_status.started()
        async for mail in self._receive:
            config = self.config
            if config is None:
                continue
            try:
                await trio.to_thread.run_sync(_send_smtp, config, mail)
            except (OSError, smtplib.SMTPException) as exc:
                self.access_log.record("mail.failed", error=type(exc).__name__)
                continue
            self.sent += 1
            self.access_log.record("mail.sent", subject=mail.subject)


def _send_smtp(config: SmtpConfig, mail: Mail) -> None:
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message.set_content(mail.body)
    with smtplib.SMTP(config.host, config.port, timeout=SEND_TIMEOUT_S) as smtp:
        if config.starttls:
            smtp.starttls(context=ssl.create_default_context())
        smtp.send_message(message)
