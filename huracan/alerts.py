"""Notifications for events someone must hear about (rollbacks, rejections, data-quality failures).

One interface, :class:`Notifier`; the default writes a log line. Every other channel goes through
the maintained notifier library apprise (https://github.com/caronc/apprise, ``apprise==2.3.0``):
:class:`AppriseNotifier` takes apprise URLs (``tgram://TOKEN/CHAT_ID``, ``slack://...``,
``discord://...``, ``json://host:port/path``, ``mailtos://...``; the full list is apprise's
"services" page). :class:`WebhookNotifier` and :class:`TelegramNotifier` are thin constructors
over it, kept for the ``alerts=webhook`` and ``alerts=telegram`` configs.

Guarantees of every notifier here:

- ``notify`` never raises into the caller: a failed delivery is one ERROR line on the
  ``huracan.alerts`` logger (``notification to <URL with secrets hidden> failed: <reason>``) and
  the job goes on;
- no secret reaches a log: apprise's own log records and urllib3's (which print the request URL,
  e.g. the Telegram bot token, at DEBUG) are swallowed while a notifier builds or sends, and what
  is kept of them for the failure line is masked (apprise's privacy URL, the URL's tokens and
  password replaced by ``***``, :func:`huracan.secrets.mask_text`);
- each HTTP request is bounded: connect and read timeouts are both ``timeout_s`` seconds (apprise's
  ``cto``/``rto``), and services are sent one after the other in the calling thread, so a
  notification takes at most about ``2 * timeout_s`` per URL (times ``retry + 1`` when a URL sets
  apprise's ``retry=``).

Configure them through Hydra (``alerts`` config group: ``log``, ``apprise``, ``webhook``,
``telegram``) or build them with :func:`notifier_from_env`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from huracan.secrets import MASK, mask_text

log = logging.getLogger("huracan.alerts")

SEVERITIES = ("info", "warning", "critical")

#: environment variable of :func:`notifier_from_env`: apprise URLs, comma or space separated
APPRISE_URLS_ENV = "HURACAN_APPRISE_URLS"

#: loggers whose records are swallowed while a notifier builds or sends (apprise's own, and
#: urllib3's request lines, which hold the full URL: ``"POST /bot<token>/sendMessage"``)
_QUIET_LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry")
#: apprise schemas that post a structured body of their own (title and message separate fields)
_STRUCTURED = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})
#: apprise notify types of our severities (apprise has info/success/warning/failure)
_NOTIFY_TYPE = {"info": "info", "warning": "warning", "critical": "failure"}
#: what separates the parts of a URL (the pieces between them may be credentials)
_URL_SEP = re.compile(r"[/:@?&=#,;\s]+")


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


# --- keeping apprise (and urllib3) quiet while we use them --------------------------------------

#: the messages (WARNING and above) swallowed in the current context, or None outside our calls
_captured: ContextVar[list[str] | None] = ContextVar("huracan_alerts_captured", default=None)


class _SwallowWhileNotifying(logging.Filter):
    """Drops the records a notifier's own calls produce (keeping WARNING+ messages for the
    failure line); records of other code using the same loggers pass untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        sink = _captured.get()
        if sink is None:
            return True
        if record.levelno >= logging.WARNING:
            try:
                sink.append(record.getMessage())
            except Exception:  # a malformed record must not break the notification
                sink.append(str(record.msg))
        return False


_FILTER = _SwallowWhileNotifying()


@contextlib.contextmanager
def _quiet() -> Iterator[list[str]]:
    """Swallow apprise's and urllib3's records in this context; yields what was swallowed."""
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    sink: list[str] = []
    token = _captured.set(sink)
    try:
        yield sink
    finally:
        _captured.reset(token)


def split_urls(text: str) -> list[str]:
    """Apprise URLs from a comma- or whitespace-separated string (empty parts dropped)."""
    return [u for u in re.split(r"[,\s]+", text) if u]


def _url_secrets(raw: str, public: str = "") -> set[str]:
    """The parts of ``raw`` that ``public`` (apprise's privacy URL) does not show, i.e. the
    credentials, plus the path of a custom HTTP URL (webhook paths are often tokens)."""
    def parts(text: str) -> set[str]:
        out = set()
        for p in _URL_SEP.split(text):
            out |= {p, unquote(p)}
        return {p for p in out if len(p) >= 3}

    scheme, _, rest = raw.partition("://")
    secrets = parts(rest) - parts(public) if public else parts(rest)
    split = urlsplit(raw)
    if split.password:
        secrets |= {split.password, unquote(split.password)}
    if scheme.lower() in _STRUCTURED:
        secrets |= {p for p in parts(split.path) if len(p) >= 4}
    return secrets


def _masker(secrets: set[str]) -> re.Pattern[str] | None:
    ordered = sorted(secrets, key=len, reverse=True)  # longest first: "123:abc" before "abc"
    return re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None


def _mask(text: str, pattern: re.Pattern[str] | None) -> str:
    text = pattern.sub(MASK, text) if pattern is not None else text
    return mask_text(text)


@dataclass
class _Service:
    """One apprise URL, ready to send: its plugin, a safe label and the masking pattern."""

    label: str
    structured: bool
    pattern: re.Pattern[str] | None
    apprise: Any  # apprise.Apprise holding this one service


class AppriseNotifier:
    """Sends each alert to every apprise URL in ``urls``.

    Args:
        urls: apprise URLs (a list, or one string of URLs separated by commas or whitespace),
            e.g. ``tgram://123456:ABC-token/987654``, ``json://hooks.example.com/alerts``,
            ``slack://TokenA/TokenB/TokenC/#channel``. See apprise's documentation for every
            service and its URL options.
        timeout_s: connect and read timeout of each HTTP request, seconds (> 0); overrides the
            URL's own ``cto``/``rto``.

    What is sent: the body is :meth:`Alert.text` (``[severity] title (key=value ...)``); custom
    HTTP services (``json://``, ``form://``, ``xml://``) also get the title as its own field.
    Severities map to apprise notify types: info -> info, warning -> warning,
    critical -> failure.

    Raises:
        ValueError: ``timeout_s`` not positive, no URL, or a URL apprise cannot load (the message
            names its position and scheme and apprise's reason, with the URL's parts masked).
    """

    def __init__(self, urls: Sequence[str] | str, timeout_s: float = 5.0) -> None:
        import apprise

        if not timeout_s > 0:
            raise ValueError(f"alerts: timeout_s must be > 0 seconds, got {timeout_s!r}")
        url_list = split_urls(urls) if isinstance(urls, str) else [u for u in urls if u]
        if not url_list:
            raise ValueError("alerts: AppriseNotifier needs at least one apprise URL")
        self.timeout_s = float(timeout_s)
        self._services: list[_Service] = []
        for i, url in enumerate(url_list, start=1):
            self._services.append(self._load(i, url, apprise))

    def _load(self, position: int, url: str, apprise: Any) -> _Service:
        scheme = url.partition("://")[0].lower() if "://" in url else "?"
        # async_mode off: sends run in this thread, one after the other (bounded, and our log
        # filter sees them)
        with _quiet() as swallowed:
            asset = apprise.AppriseAsset(async_mode=False)
            holder = apprise.Apprise(asset=asset)
            try:
                plugin = apprise.Apprise.instantiate(url, asset=asset)
            except Exception as exc:  # apprise suppresses these by default; belt and braces
                swallowed.append(f"{type(exc).__name__}: {exc}")
                plugin = None
            if plugin is not None:
                holder.add(plugin)
        if plugin is None:
            pattern = _masker(_url_secrets(url))
            why = _mask("; ".join(swallowed), pattern) or "unknown or disabled service"
            raise ValueError(f"alerts: apprise URL #{position} ({scheme}://...) cannot be "
                             f"loaded: {why}")
        plugin.socket_connect_timeout = self.timeout_s
        plugin.socket_read_timeout = self.timeout_s
        public = str(plugin.url(privacy=True))
        pattern = _masker(_url_secrets(url, public))
        label = public.split("?", 1)[0]
        if scheme in _STRUCTURED:  # show where, not the (often secret) path
            split = urlsplit(label)
            label = urlunsplit((split.scheme, split.netloc, "/..." if split.path.strip("/")
                                else "", "", ""))
        return _Service(label=_mask(label, pattern), structured=scheme in _STRUCTURED,
                        pattern=pattern, apprise=holder)

    @property
    def labels(self) -> list[str]:
        """The services' URLs as logs show them (credentials hidden)."""
        return [s.label for s in self._services]

    def _plugins(self) -> list[Any]:
        return [plugin for s in self._services for plugin in s.apprise]

    def notify(self, alert: Alert) -> None:
        """Send ``alert`` to every URL; a failure is logged (one masked line per URL), never
        raised."""
        from apprise import NotifyFormat, NotifyType

        for svc in self._services:
            reasons: list[str] = []
            try:
                with _quiet() as reasons:
                    ok = bool(svc.apprise.notify(
                        body=alert.text(), title=alert.title if svc.structured else "",
                        notify_type=NotifyType(_NOTIFY_TYPE[alert.severity]),
                        body_format=NotifyFormat.TEXT))
            except Exception as exc:  # never into the caller
                ok = False
                reasons.append(f"{type(exc).__name__}: {exc}")
            if not ok:
                why = _mask("; ".join(dict.fromkeys(reasons)), svc.pattern) or "not delivered"
                log.error("notification to %s failed: %s", svc.label, why)


def webhook_apprise_url(url: str) -> str:
    """The apprise ``json://`` URL posting ``{"title", "text", "severity"}`` to an
    ``http(s)://`` webhook ``url`` (apprise's JSON payload remapped with its ``:key=newkey``
    URL arguments: ``message`` -> ``text``, ``type`` -> ``severity``, ``version`` and
    ``attachments`` dropped; the webhook's own query parameters kept as apprise ``-key=value``).

    Raises:
        ValueError: ``url`` is not ``http://`` or ``https://``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"alerts: webhook url must be http(s)://host/path, got scheme "
                         f"{parts.scheme or '(none)'!r}")
    query = [(f"-{k}", v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query += [(":message", "text"), (":type", "severity"), (":version", ""),
              (":attachments", "")]
    scheme = "jsons" if parts.scheme == "https" else "json"
    return urlunsplit((scheme, parts.netloc, parts.path or "/", urlencode(query), ""))


class WebhookNotifier(AppriseNotifier):
    """POSTs ``{"title", "text", "severity"}`` as JSON to an ``http(s)://`` webhook ``url``
    (Slack-compatible ``text`` field), through apprise's ``json://`` service.

    Changed from the hand-built notifier it replaces: ``details`` is no longer a field of its
    own (the ``text`` carries it: ``[warning] rejected (score=0.5)``), and a critical alert's
    ``severity`` is apprise's ``"failure"`` (info and warning are unchanged).

    Raises:
        ValueError: ``url`` is not ``http(s)://``, or ``timeout_s`` is not positive.
    """

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        super().__init__([webhook_apprise_url(url)], timeout_s)
        self.url = url


class TelegramNotifier(AppriseNotifier):
    """Sends the alert text through the Telegram Bot API ``sendMessage`` method (apprise's
    ``tgram://`` service, no image, no owner detection).

    Args:
        token: the bot token (``123456:ABC...``); never logged.
        chat_id: the chat to write to (a number, ``-100...`` for a group, or ``@channel``).
        timeout_s: connect and read timeout, seconds.
        api_url: the Bot API server (default Telegram's; a self-hosted Bot API server, or a
            loopback server in tests).

    Raises:
        ValueError: apprise refuses the token (the message masks it) or ``timeout_s`` <= 0.
    """

    def __init__(self, token: str, chat_id: str | int, timeout_s: float = 5.0,
                 api_url: str = "https://api.telegram.org") -> None:
        super().__init__([f"tgram://{quote(str(token), safe=':')}/"
                          f"{quote(str(chat_id), safe='@-')}/?image=no&detect=no"], timeout_s)
        self.chat_id = str(chat_id)
        base = api_url.rstrip("/") + "/bot"
        for plugin in self._plugins():
            plugin.notify_url = base  # apprise's Bot API base (``https://api.telegram.org/bot``)


class MultiNotifier:
    """Fans an alert out to several notifiers."""

    def __init__(self, notifiers: list[Notifier]) -> None:
        self.notifiers = notifiers

    def notify(self, alert: Alert) -> None:
        for n in self.notifiers:
            n.notify(alert)


def notifier_from_env(timeout_s: float = 5.0) -> Notifier:
    """The log notifier, plus, when set: the apprise URLs of ``HURACAN_APPRISE_URLS`` (comma or
    space separated), a webhook (``HURACAN_ALERT_WEBHOOK``) and Telegram
    (``HURACAN_TELEGRAM_TOKEN`` + ``HURACAN_TELEGRAM_CHAT_ID``).

    Raises:
        ValueError: a variable holds a URL apprise cannot load (message masked).
    """
    notifiers: list[Notifier] = [LogNotifier()]
    if urls := split_urls(os.environ.get(APPRISE_URLS_ENV, "")):
        notifiers.append(AppriseNotifier(urls, timeout_s))
    if url := os.environ.get("HURACAN_ALERT_WEBHOOK"):
        notifiers.append(WebhookNotifier(url, timeout_s))
    token = os.environ.get("HURACAN_TELEGRAM_TOKEN")
    chat = os.environ.get("HURACAN_TELEGRAM_CHAT_ID")
    if token and chat:
        notifiers.append(TelegramNotifier(token, chat, timeout_s))
    return notifiers[0] if len(notifiers) == 1 else MultiNotifier(notifiers)


__all__ = ["APPRISE_URLS_ENV", "Alert", "AppriseNotifier", "LogNotifier", "MultiNotifier",
           "Notifier", "TelegramNotifier", "WebhookNotifier", "notifier_from_env",
           "split_urls", "webhook_apprise_url"]
