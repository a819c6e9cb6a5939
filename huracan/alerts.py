"""Notifications for events someone must hear about (rollbacks, rejections, data-quality failures).

One interface, :class:`Notifier`; the default writes a log line. Webhook and Telegram notifiers post
JSON with the standard library (no extra dependency); they never raise into the caller: a failed
notification is logged and the job goes on. Configure them through Hydra (``alerts`` config group)
or build them with :func:`notifier_from_env`.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol

from huracan.secrets import mask_url

log = logging.getLogger("huracan.alerts")

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Alert:
    """What happened: ``title`` (one line), ``severity`` (info/warning/critical) and ``details``."""

    title: str
    severity: str = "warning"
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def text(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.details.items())
        return f"[{self.severity}] {self.title}" + (f" ({extra})" if extra else "")


class Notifier(Protocol):
    def notify(self, alert: Alert) -> None: ...


class LogNotifier:
    """The default: one log line per alert on the ``huracan.alerts`` logger."""

    def notify(self, alert: Alert) -> None:
        level = {"info": logging.INFO, "warning": logging.WARNING}.get(alert.severity,
                                                                        logging.ERROR)
        log.log(level, "%s", alert.text())


class WebhookNotifier:
    """POSTs ``{"title", "severity", "details", "text"}`` as JSON to ``url`` (Slack-compatible
    ``text`` field); failures are logged, never raised."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.label = mask_url(url)  # what error logs name (never a credential)

    def _post(self, url: str, payload: dict[str, Any]) -> None:
        req = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as exc:
            log.error("notification to %s failed: %s", self.label, exc)

    def notify(self, alert: Alert) -> None:
        self._post(self.url, {"title": alert.title, "severity": alert.severity,
                              "details": alert.details, "text": alert.text()})


class TelegramNotifier(WebhookNotifier):
    """Sends the alert text through the Telegram Bot API ``sendMessage`` method."""

    def __init__(self, token: str, chat_id: str, timeout_s: float = 5.0,
                 api_url: str = "https://api.telegram.org") -> None:
        super().__init__(f"{api_url}/bot{token}/sendMessage", timeout_s)
        self.chat_id = chat_id
        self.label = f"Telegram sendMessage (chat {chat_id})"  # the URL holds the bot token

    def notify(self, alert: Alert) -> None:
        self._post(self.url, {"chat_id": self.chat_id, "text": alert.text()})


class MultiNotifier:
    """Fans an alert out to several notifiers."""

    def __init__(self, notifiers: list[Notifier]) -> None:
        self.notifiers = notifiers

    def notify(self, alert: Alert) -> None:
        for n in self.notifiers:
            n.notify(alert)


def notifier_from_env() -> Notifier:
    """The log notifier, plus a webhook (``HURACAN_ALERT_WEBHOOK``) and/or Telegram
    (``HURACAN_TELEGRAM_TOKEN`` + ``HURACAN_TELEGRAM_CHAT_ID``) when those are set."""
    notifiers: list[Notifier] = [LogNotifier()]
    if url := os.environ.get("HURACAN_ALERT_WEBHOOK"):
        notifiers.append(WebhookNotifier(url))
    token = os.environ.get("HURACAN_TELEGRAM_TOKEN")
    chat = os.environ.get("HURACAN_TELEGRAM_CHAT_ID")
    if token and chat:
        notifiers.append(TelegramNotifier(token, chat))
    return notifiers[0] if len(notifiers) == 1 else MultiNotifier(notifiers)
