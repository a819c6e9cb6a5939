"""Keep credentials out of logs, errors, MLflow params, tags and artifacts, and Hydra's own files.

Two rules, applied everywhere a config, URL or error leaves the process:

- the password of every ``scheme://user:password@host`` URL becomes ``***`` (:func:`mask_url`);
- the value of every key that names a secret (``password``, ``token``, ``secret``, ``api_key``...)
  becomes ``***`` (:func:`mask_secrets` for nested configs, :func:`mask_text` for YAML text and
  ``key=value`` overrides).

Secrets should not enter a composed config at all: pass them through the environment
(``db.url=${oc.env:HURACAN_DB_URL}``, the default), so Hydra's ``.hydra/config.yaml`` keeps the
interpolation, not the value. What still arrives on a command line is masked by
:class:`huracan.callbacks.sweep.MaskSecrets` in ``.hydra/*.yaml`` and ``multirun.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

#: ``scheme://user:password@``, also as Hydra prints overrides (``\:`` for each colon)
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*\\?://)(?P<user>[^:/@\s\\]*)"
                       r"(?P<sep>\\?:)(?P<pw>[^@/\s]+)@")
#: key names whose values are secrets (matched case-insensitively, anywhere in the key)
_SECRET_KEY = re.compile(r"(passw(or)?d|secret|token|api_?key|private_?key|credential)", re.I)
#: ``key: value`` (YAML) or ``key=value`` (override) lines whose key names a secret
_SECRET_ASSIGN = re.compile(
    r"(?P<key>[\w.\-]*(passw(or)?d|secret|token|api_?key|private_?key|credential)[\w\-]*)"
    r"(?P<sep>\s*[:=]\s*)(?P<value>[^\s,'\"\]}]+)", re.I)


def mask_url(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``text`` with ``***``.

    >>> mask_url("postgresql+psycopg2://huracan:s3cret@db:5432/brain")
    'postgresql+psycopg2://huracan:***@db:5432/brain'
    """
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}{m['sep']}{MASK}@", text)


def is_secret_key(key: str) -> bool:
    """Whether a config key names a secret (``password``, ``token``, ``api_key``...)."""
    return bool(_SECRET_KEY.search(str(key)))


def mask_secrets(tree: Any) -> Any:
    """A copy of a nested config (mappings, lists, scalars) with URL passwords and the values of
    secret-named keys masked; interpolations such as ``${oc.env:HURACAN_DB_URL}`` stay as they
    are (they name a variable, not its value)."""
    if isinstance(tree, Mapping):
        out = {}
        for key, value in tree.items():
            if is_secret_key(key) and value is not None and not isinstance(value, Mapping):
                text = str(value)
                out[key] = text if text.startswith("${") else MASK
            else:
                out[key] = mask_secrets(value)
        return out
    if isinstance(tree, (list, tuple)):
        return [mask_secrets(v) for v in tree]
    if isinstance(tree, str):
        return mask_url(tree)
    return tree


def mask_text(text: str) -> str:
    """Mask URL passwords and ``key: value`` / ``key=value`` secrets in free text (YAML files,
    command lines, log lines)."""
    def _assign(m: re.Match[str]) -> str:
        value = m["value"]
        if value.startswith("${") or value == MASK:
            return m.group(0)
        return f"{m['key']}{m['sep']}{MASK}"

    return _SECRET_ASSIGN.sub(_assign, mask_url(text))
