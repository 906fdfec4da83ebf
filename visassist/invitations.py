"""Sending the customer their link: e-mail over SMTP, or SMS through a pluggable provider."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal, Protocol

import aiohttp
import aiosmtplib

from visassist.config import Settings
from visassist.errors import ApiErrorCode, ClientError
from visassist.models import Session

log = logging.getLogger(__name__)


class InvitationError(Exception):
    """The message could not be handed over; the text is safe to show to the API client."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    sender: str = "visassist@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = True


class SmsProvider(Protocol):
    """Anything that can send a short text to a phone number (Twilio, MessageBird, a gateway...)."""

    async def send_sms(self, to: str, text: str) -> None: ...


@dataclass(frozen=True)
class HttpSmsProvider:
    """POSTs {"to", "text"} as JSON to a URL: a thin relay in front of any SMS gateway."""

    url: str
    token: str | None = None

    async def send_sms(self, to: str, text: str) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, \
                    http.post(self.url, json={"to": to, "text": text}, headers=headers) as response:
                if not 200 <= response.status < 300:
                    raise InvitationError(f"the SMS provider answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise InvitationError(f"the SMS provider could not be reached ({type(exc).__name__})") from exc


def wording(session: Session, url: str) -> tuple[str, str]:
    """Subject and text, in plain words: who asks, what happens, until when."""
    until = session.expires_at.strftime("%H:%M UTC on %d %b")
    subject = f"Show your support agent the problem (ticket {session.ticket_id})"
    text = (f"Hello{(' ' + session.customer['name']) if session.customer.get('name') else ''},\n\n"
            f"Your support agent would like to see the problem through your phone's camera.\n"
            f"Open this link on your phone, read what is shared, and tap Join:\n\n{url}\n\n"
            f"No app or account is needed. The link works until {until}.\n")
    return subject, text


async def send_email(config: SmtpConfig, to: str, session: Session, url: str) -> None:
    subject, text = wording(session, url)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = config.sender, to, subject
    message.set_content(text)
    try:
        await aiosmtplib.send(message, hostname=config.host, port=config.port, username=config.username,
                              password=config.password, start_tls=config.starttls, timeout=15)
    except (aiosmtplib.SMTPException, OSError) as exc:
        log.warning("invitation e-mail to the customer of %s failed: %s", session.id, exc)
        raise InvitationError(f"the mail server refused or could not be reached ({type(exc).__name__})") \
            from exc


async def send_sms(provider: SmsProvider, to: str, session: Session, url: str) -> None:
    await provider.send_sms(to, f"Your support agent would like to see the problem: {url}")


def mask(address: str) -> str:
    """For the timeline: enough to tell which address, not enough to be one."""
    if "@" in address:
        name, _, domain = address.partition("@")
        return f"{name[:1]}***@{domain}"
    return f"***{address[-3:]}"


async def send_link(settings: Settings, session: Session, url: str, *, email: str | None = None,
                    phone: str | None = None) -> tuple[Literal["email", "sms"], str]:
    """Send the customer their link by e-mail or SMS, as configured; (channel, masked address).
    Raises ClientError: the channel is not configured (422) or the relay failed (502)."""
    try:
        if email is not None:
            if not settings.smtp_host:
                raise ClientError(ApiErrorCode.EMAIL_NOT_CONFIGURED, "e-mail invitations are not configured "
                                  "(start the server with --smtp-host)", status=422)
            config = SmtpConfig(settings.smtp_host, settings.smtp_port, settings.smtp_from,
                                settings.smtp_username, settings.smtp_password, settings.smtp_starttls)
            await send_email(config, email, session, url)
            return "email", mask(email)
        assert phone is not None
        if not settings.sms_url:
            raise ClientError(ApiErrorCode.SMS_NOT_CONFIGURED, "SMS invitations are not configured "
                              "(start the server with --sms-url)", status=422)
        await send_sms(HttpSmsProvider(settings.sms_url, settings.sms_token), phone, session, url)
        return "sms", mask(phone)
    except InvitationError as exc:
        raise ClientError(ApiErrorCode.INVITATION_FAILED, str(exc), status=502) from None
