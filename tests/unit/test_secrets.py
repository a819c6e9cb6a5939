"""Secrets are masked in URLs, nested configs, YAML/override text and log records."""

from __future__ import annotations

import logging

from huracan.callbacks.sweep import install_log_masking
from huracan.secrets import is_secret_key, mask_secrets, mask_text, mask_url


def test_url_passwords_are_masked_also_as_hydra_prints_them():
    assert mask_url("postgresql+psycopg2://huracan:s3cret@db:5432/brain") == \
        "postgresql+psycopg2://huracan:***@db:5432/brain"
    escaped = r"db.url=postgresql+psycopg2\://huracan\:s3cret@db\:5432/brain"
    assert "s3cret" not in mask_url(escaped) and r"huracan\:***@db" in mask_url(escaped)
    assert mask_url("sqlite:///huracan.db") == "sqlite:///huracan.db"  # nothing to hide


def test_nested_configs_keep_interpolations_and_mask_values():
    cfg = {"db": {"url": "postgresql://u:pw@h/d"},
           "alerts": {"token": "123:ABC", "chat_id": "42", "url": "${oc.env:HOOK}"},
           "data": {"api_key": "k", "path": "/x.parquet"}, "seeds": [1, "mysql://a:b@h/"],
           "telegram": {"token": "${oc.env:HURACAN_TELEGRAM_TOKEN}"}}
    out = mask_secrets(cfg)
    assert out["db"]["url"] == "postgresql://u:***@h/d"
    assert out["alerts"] == {"token": "***", "chat_id": "42", "url": "${oc.env:HOOK}"}
    assert out["data"] == {"api_key": "***", "path": "/x.parquet"}
    assert out["seeds"] == [1, "mysql://a:***@h/"]
    assert out["telegram"]["token"] == "${oc.env:HURACAN_TELEGRAM_TOKEN}"
    assert cfg["alerts"]["token"] == "123:ABC"  # a copy: the input is untouched
    assert is_secret_key("password") and is_secret_key("API_KEY") and not is_secret_key("seed")


def test_yaml_and_override_text_is_masked():
    text = "token: 123:ABC\nchat_id: 42\nurl: https://u:p@hook/x\napi_key: ${oc.env:K}\n"
    assert mask_text(text) == "token: ***\nchat_id: 42\nurl: https://u:***@hook/x\n" \
        "api_key: ${oc.env:K}\n"
    assert mask_text("a=1 alerts.token=xyz b=2") == "a=1 alerts.token=*** b=2"


def test_log_records_are_masked_whatever_the_handler(caplog):
    install_log_masking()
    install_log_masking()  # idempotent
    with caplog.at_level(logging.INFO):
        logging.getLogger("any.module").info("connecting to %s", "postgresql://u:hunter2@h/d")
    assert "hunter2" not in caplog.text and "u:***@h" in caplog.text
