"""Notifiers: the log default, a real HTTP webhook on loopback, failures never raise or leak."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from huracan.alerts import Alert, LogNotifier, TelegramNotifier, WebhookNotifier


def test_log_notifier_writes_one_line(caplog):
    with caplog.at_level(logging.WARNING, logger="huracan.alerts"):
        LogNotifier().notify(Alert("rollback of huracan-BTCUSDT-1h", "critical", {"to": 3}))
    assert caplog.records[-1].getMessage() == "[critical] rollback of huracan-BTCUSDT-1h (to=3)"


def test_unknown_severity_is_refused():
    with pytest.raises(ValueError, match="severity"):
        Alert("x", "loud")


@pytest.fixture()
def http_server():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "body": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


def test_webhook_posts_json(http_server):
    url, received = http_server
    WebhookNotifier(f"{url}/hook").notify(Alert("rejected", "warning", {"score": 0.5}))
    assert received == [{"path": "/hook", "body": {
        "title": "rejected", "severity": "warning", "details": {"score": 0.5},
        "text": "[warning] rejected (score=0.5)"}}]


def test_telegram_uses_send_message(http_server):
    url, received = http_server
    TelegramNotifier("123:abc", "42", api_url=url).notify(Alert("drift", "info"))
    assert received[0]["path"] == "/bot123:abc/sendMessage"
    assert received[0]["body"] == {"chat_id": "42", "text": "[info] drift"}


def test_failed_delivery_is_logged_without_the_token(caplog):
    with caplog.at_level(logging.ERROR, logger="huracan.alerts"):
        TelegramNotifier("123:SECRET", "42", api_url="http://127.0.0.1:9",
                         timeout_s=0.5).notify(Alert("x"))
        WebhookNotifier("http://user:pw@127.0.0.1:9/h", timeout_s=0.5).notify(Alert("y"))
    text = caplog.text
    assert "failed" in text and "SECRET" not in text and ":pw@" not in text
