"""Notifiers: the log default; apprise URLs against a real HTTP server on loopback (no network);
failures never raise, never leak a secret, and are bounded in time."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from huracan.alerts import (
    Alert,
    AppriseNotifier,
    LogNotifier,
    TelegramNotifier,
    WebhookNotifier,
    notifier_from_env,
    split_urls,
)


def test_log_notifier_writes_one_line(caplog):
    with caplog.at_level(logging.WARNING, logger="huracan.alerts"):
        LogNotifier().notify(Alert("rollback of huracan-BTCUSDT-1h", "critical", {"to": 3}))
    assert caplog.records[-1].getMessage() == "[critical] rollback of huracan-BTCUSDT-1h (to=3)"


def test_unknown_severity_is_refused():
    with pytest.raises(ValueError, match="severity"):
        Alert("x", "loud")


@pytest.fixture()
def http_server():
    """A real HTTP server on 127.0.0.1 (a free port) recording each POST's path and JSON body."""
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
    yield f"127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


@pytest.fixture()
def closed_port():
    """A loopback port nobody listens on (bound then released: connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_apprise_json_url_posts_apprise_payload(http_server):
    host, received = http_server
    AppriseNotifier([f"json://{host}/alerts"], timeout_s=2).notify(
        Alert("rejected", "critical", {"score": 0.5}))
    assert received == [{"path": "/alerts", "body": {
        "version": "1.0", "title": "rejected", "message": "[critical] rejected (score=0.5)",
        "attachments": [], "type": "failure"}}]


def test_several_urls_in_one_string_each_receive(http_server):
    host, received = http_server
    notifier = AppriseNotifier(f"json://{host}/a, json://{host}/b", timeout_s=2)
    notifier.notify(Alert("drift", "info"))
    assert sorted(r["path"] for r in received) == ["/a", "/b"]
    assert all(r["body"]["type"] == "info" for r in received)


def test_webhook_posts_slack_compatible_text(http_server):
    host, received = http_server
    WebhookNotifier(f"http://{host}/hook?channel=ops").notify(
        Alert("rejected", "warning", {"score": 0.5}))
    assert received == [{"path": "/hook?channel=ops", "body": {
        "title": "rejected", "severity": "warning", "text": "[warning] rejected (score=0.5)"}}]


def test_webhook_refuses_a_non_http_url():
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier("ftp://example.org/hook")


def test_telegram_uses_send_message(http_server):
    host, received = http_server
    TelegramNotifier("123:abc", "42", api_url=f"http://{host}").notify(Alert("drift", "info"))
    assert received[0]["path"] == "/bot123:abc/sendMessage"
    assert received[0]["body"]["chat_id"] == 42
    assert received[0]["body"]["text"] == "[info] drift"
    assert len(received) == 1  # no image message before the text


def test_failed_delivery_is_logged_without_the_token(caplog, closed_port):
    # DEBUG everywhere: apprise and urllib3 print the request URL (bot token) at DEBUG
    with caplog.at_level(logging.DEBUG):
        TelegramNotifier("123:SECRET", "42", api_url=f"http://127.0.0.1:{closed_port}",
                         timeout_s=0.5).notify(Alert("x"))
        WebhookNotifier(f"http://user:pw@127.0.0.1:{closed_port}/h", timeout_s=0.5).notify(
            Alert("y"))
        AppriseNotifier([f"json://user:hunter2@127.0.0.1:{closed_port}/hooks/tok3nPATH"],
                        timeout_s=0.5).notify(Alert("z"))
    text = caplog.text
    failures = [r for r in caplog.records if r.name == "huracan.alerts"]
    assert len(failures) == 3 and all("failed" in r.getMessage() for r in failures)
    assert all(r.levelno == logging.ERROR for r in failures)
    for secret in ("SECRET", ":pw@", "hunter2", "tok3nPATH"):
        assert secret not in text, secret
    # and nothing from apprise or urllib3 went through while our notifiers ran
    assert not [r for r in caplog.records if r.name.startswith(("apprise", "urllib3"))]


def test_refused_port_returns_without_raising(caplog, closed_port):
    with caplog.at_level(logging.ERROR, logger="huracan.alerts"):
        AppriseNotifier([f"json://127.0.0.1:{closed_port}/x"], timeout_s=0.5).notify(
            Alert("x", "critical"))
    assert len(caplog.records) == 1
    assert f"127.0.0.1:{closed_port}" in caplog.records[0].getMessage()


def test_a_silent_server_is_bounded_by_the_timeout(caplog):
    """A server that accepts the request and never answers, holding the connection open: the
    notifier gives up on its own (its read timeout), not because the server hung up. No timing
    assert: the server holds the line up to a 60 s deadline, far above the 0.5 s timeout, and
    records whether it was still holding it when notify returned."""
    accepted, still_holding = threading.Event(), threading.Event()
    released = threading.Event()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        silent.settimeout(60)
        port = silent.getsockname()[1]

        def hold() -> None:
            try:
                conn, _ = silent.accept()
            except OSError:
                return
            accepted.set()
            still_holding.set()
            released.wait(60)  # silent until the test is done (or the deadline)
            still_holding.clear()
            conn.close()

        server = threading.Thread(target=hold, daemon=True)
        server.start()
        notifier = AppriseNotifier([f"json://127.0.0.1:{port}/x"], timeout_s=0.5)
        assert [(p.socket_connect_timeout, p.socket_read_timeout)
                for p in notifier._plugins()] == [(0.5, 0.5)]
        with caplog.at_level(logging.ERROR, logger="huracan.alerts"):
            notifier.notify(Alert("x"))  # returns: never raises
        returned_while_held = still_holding.is_set()
        released.set()
        server.join(60)
    assert accepted.is_set()  # the request reached the server
    assert returned_while_held  # the client's timeout ended it, the server never answered
    (failure,) = caplog.records  # one line for the one URL, the caller untouched
    assert failure.getMessage().startswith(f"notification to json://127.0.0.1:{port}/... failed")


def test_unloadable_url_is_refused_with_its_token_masked():
    with pytest.raises(ValueError, match=r"#1 \(tgram://") as info:
        AppriseNotifier(["tgram://not-a-valid-TOKENXYZ/42"])
    assert "TOKENXYZ" not in str(info.value)
    with pytest.raises(ValueError, match="timeout_s"):
        AppriseNotifier(["json://127.0.0.1/x"], timeout_s=0)
    with pytest.raises(ValueError, match="at least one"):
        AppriseNotifier(" , ")


def test_other_users_of_apprise_logging_are_untouched(caplog):
    # the filter only swallows records made inside our own calls
    with caplog.at_level(logging.WARNING, logger="apprise"):
        AppriseNotifier(["json://127.0.0.1/x"])
        logging.getLogger("apprise").warning("outside huracan")
    assert [r.getMessage() for r in caplog.records] == ["outside huracan"]


def test_split_urls():
    assert split_urls(" json://a/x,tgram://1:b/2  slack://t/u/v ") == [
        "json://a/x", "tgram://1:b/2", "slack://t/u/v"]


def test_notifier_from_env_reads_apprise_urls(monkeypatch, http_server, caplog):
    host, received = http_server
    for var in ("HURACAN_ALERT_WEBHOOK", "HURACAN_TELEGRAM_TOKEN", "HURACAN_TELEGRAM_CHAT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("HURACAN_APPRISE_URLS", raising=False)
    with caplog.at_level(logging.INFO, logger="huracan.alerts"):
        notifier_from_env().notify(Alert("drift", "warning"))  # nothing set: the log only
    assert [r.getMessage() for r in caplog.records] == ["[warning] drift"] and received == []
    caplog.clear()
    monkeypatch.setenv("HURACAN_APPRISE_URLS", f"json://{host}/one json://{host}/two")
    with caplog.at_level(logging.INFO, logger="huracan.alerts"):
        notifier_from_env().notify(Alert("drift", "warning"))  # the log and both URLs
    assert [r.getMessage() for r in caplog.records] == ["[warning] drift"]
    assert sorted(r["path"] for r in received) == ["/one", "/two"]
    assert [r["body"]["message"] for r in received] == ["[warning] drift"] * 2


@pytest.mark.parametrize("group", ["apprise", "webhook"])
def test_alerts_config_group_builds_a_working_notifier(group, monkeypatch, http_server):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from huracan.config import register_resolvers
    from huracan.resources import conf_dir

    host, received = http_server
    monkeypatch.setenv("HURACAN_APPRISE_URLS", f"json://{host}/apprise")
    monkeypatch.setenv("HURACAN_ALERT_WEBHOOK", f"http://{host}/webhook")
    register_resolvers()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"alerts={group}"])
    notifier = instantiate(cfg.alerts)
    notifier.notify(Alert("rollback", "critical"))
    assert [r["path"] for r in received] == [f"/{group}"]
