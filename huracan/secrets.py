"""Keep credentials out of logs, errors and MLflow params."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")


def mask_url(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``text`` with ``***``.

    >>> mask_url("postgresql+psycopg2://huracan:s3cret@db:5432/brain")
    'postgresql+psycopg2://huracan:***@db:5432/brain'
    """
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
