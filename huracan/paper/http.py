"""Production behind HTTP: the paper loop asks an MLflow scoring server (``mlflow models serve``
of the production model, docs/how-to/serve.md) instead of loading the model in process.

:class:`HttpProduction` is a :class:`huracan.paper.production.Production`: ``answer(candles)``
POSTs the request's candles to ``<url>/invocations`` as ``{"inputs": {"columns": [...],
"data": [[...], ...]}}`` (the ``dataframe_split`` table wrapped in ``inputs``; timestamps as
ISO-8601 UTC bar open times) and parses ``{"predictions": [...]}`` into rows of
:data:`huracan.data.candle_request.OUTPUT_COLUMNS` (``timestamp`` UTC-aware, floats for
``forecast, position, size, leverage``, ``model_version`` as text).

Warm-up (``warmup_bars``: bars the loop sends before its anchor so the first decision has
complete features): given by the caller (``huracan paper run --warmup-bars``), else PROBED once,
lazily, without ``/ping`` and without any data: a one-bar request (a flat candle at
2020-01-01 00:00 UTC, on every timeframe's grid) is answered HTTP 400 by the model's own
``min_bars`` rule, whose one-line message says ``... needs at least N consecutive 1h bars
(feature warm-up W + lookback L) ...`` (:func:`huracan.data.candle_request.too_few_bars`); the
warm-up is then ``W + L - 1`` bars (the first answered bar is the ``W + L``-th one sent). A model
that answers one bar has warm-up 0. Any other answer raises :class:`ProductionUnavailableError`.

Errors: :class:`ProductionUnavailableError` (connection refused, timeout, HTTP 5xx/429, an answer
that is not the expected JSON) is transient: the loop records a skipped order and backs off.
:class:`ProductionRejectedError` (any other HTTP 4xx: the request broke a rule) carries the server's
one-line message; retrying the same request would not help. Neither message ever holds the
URL's credentials (:func:`huracan.secrets.mask_url`).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from huracan.data.candle_request import CANDLE_COLUMNS, OUTPUT_COLUMNS
from huracan.secrets import mask_url

#: the ``min_bars`` rule's message, as :func:`huracan.data.candle_request.too_few_bars` words it
_MIN_BARS = re.compile(r"feature warm-up (\d+) \+ lookback (\d+)")
#: the probe's one flat candle (2020-01-01 00:00 UTC lies on every timeframe's grid)
_PROBE_ROW = ["2020-01-01T00:00:00Z", 1.0, 1.0, 1.0, 1.0, 0.0]


class ProductionUnavailableError(RuntimeError):
    """Production could not be asked (connection, timeout, HTTP 5xx/429, unreadable answer);
    transient: the loop skips the bar with this one-line message and backs off."""


class ProductionRejectedError(ValueError):
    """Production refused the request (HTTP 4xx other than 429): the server's one-line
    message (e.g. ``... [rule: min_bars]``)."""


class ContextModelError(ProductionRejectedError):
    """Production reads other markets' closes (``ctx_<PAIR>_close`` request columns,
    :mod:`huracan.features.context`): the paper loop sends one market's OHLCV only, so it
    cannot run this model (never retried, never taken for a transient failure)."""


#: the ``required_columns`` rule naming a context column the request lacks
_CONTEXT_MISSING = re.compile(r"missing column\(s\) \[([^\]]*ctx_[^\]]*)\]")


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line[:limit]


def request_body(candles: pd.DataFrame) -> dict[str, Any]:
    """The JSON body of a raw-candle request: ``{"inputs": {"columns": CANDLE_COLUMNS,
    "data": [[iso_time, open, high, low, close, volume], ...]}}`` (times UTC, ``...Z``)."""
    ts = pd.DatetimeIndex(pd.to_datetime(candles["timestamp"], utc=True))
    times = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    values = candles[list(CANDLE_COLUMNS[1:])].to_numpy(np.float64).tolist()
    data = [[t, *row] for t, row in zip(times, values, strict=True)]
    return {"inputs": {"columns": list(CANDLE_COLUMNS), "data": data}}


def parse_answer(payload: Any) -> pd.DataFrame:
    """``{"predictions": [{...}, ...]}`` (or a bare list of records) -> a frame with
    :data:`OUTPUT_COLUMNS` (missing columns are null), ``timestamp`` UTC-aware.

    Raises:
        ProductionUnavailableError: the payload is not a list of answer records.
    """
    records = payload.get("predictions") if isinstance(payload, dict) else payload
    if not isinstance(records, list):
        raise ProductionUnavailableError("production answered no 'predictions' list")
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    out = pd.DataFrame({c: frame[c] if c in frame.columns else pd.Series([None] * len(frame),
                                                                        dtype=object)
                        for c in OUTPUT_COLUMNS})
    try:
        out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True, format="ISO8601")
        for col in ("forecast", "position", "size", "leverage"):
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    except (ValueError, TypeError) as exc:
        raise ProductionUnavailableError(f"production answered unreadable rows ({exc})") from None
    out["model_version"] = [None if v is None or (isinstance(v, float) and math.isnan(v))
                            else str(v) for v in out["model_version"]]
    return out.reset_index(drop=True)


class HttpProduction:
    """Production as an MLflow scoring server (see the module docstring).

    Args:
        url: the server's base URL (``http://host:5001``); a trailing ``/invocations`` is
            accepted. Credentials in it are used but never shown (:attr:`label`).
        warmup_bars: bars sent before the anchor; ``None``: probed once (module docstring).
        timeout_s: per-request timeout (seconds).
        session: a ``requests.Session``-like object (tests); default a new session.

    Attributes:
        label: the URL with its password masked (what the account's ``production`` records).
        version, run_id: of the last answer (``model_version`` / ``run_id`` columns), or None.
    """

    def __init__(self, url: str, *, warmup_bars: int | None = None, timeout_s: float = 30.0,
                 session: Any = None) -> None:
        base = url.strip().rstrip("/")
        base = base.removesuffix("/invocations")
        if not re.match(r"^https?://", base):
            raise ValueError(f"--url {mask_url(url)!r} is not an http(s) URL "
                             "(e.g. http://127.0.0.1:5001)")
        if warmup_bars is not None and warmup_bars < 0:
            raise ValueError(f"warmup_bars must be >= 0, got {warmup_bars}")
        self.url = base
        self.label = mask_url(base)
        self.timeout_s = float(timeout_s)
        self._warmup = warmup_bars
        self._session = session
        self.version: str | None = None
        self.run_id: str | None = None

    def _post(self, body: dict[str, Any]) -> Any:
        """POST ``body`` to ``/invocations``; the decoded JSON of a 200 answer.

        Raises:
            ProductionUnavailableError, ProductionRejectedError: see the module docstring.
        """
        import requests

        session = self._session or requests.Session()
        self._session = session
        where = f"{self.label}/invocations"
        try:
            resp = session.post(f"{self.url}/invocations", json=body, timeout=self.timeout_s,
                                headers={"Content-Type": "application/json"})
        except requests.RequestException as exc:
            raise ProductionUnavailableError(
                f"{where}: {type(exc).__name__}: {mask_url(_one_line(str(exc), 200))}") from None
        if resp.status_code == 200:
            try:
                return resp.json()
            except ValueError:
                raise ProductionUnavailableError(f"{where}: answer is not JSON") from None
        try:
            detail = resp.json().get("message") or resp.text
        except (ValueError, AttributeError):
            detail = resp.text
        line = f"{where}: HTTP {resp.status_code}: {mask_url(_one_line(detail))}"
        if resp.status_code >= 500 or resp.status_code == 429:
            raise ProductionUnavailableError(line)
        context = _CONTEXT_MISSING.search(str(detail))
        if context is not None:
            raise ContextModelError(f"{self.label} reads context symbols (request columns "
                                    f"[{context.group(1)}]); the paper loop sends one market's "
                                    "OHLCV only and cannot run a context model")
        raise ProductionRejectedError(line)

    @property
    def warmup_bars(self) -> int:
        """Bars sent before the anchor (given, else probed once; module docstring)."""
        if self._warmup is None:
            self._warmup = self.probe_warmup()
        return self._warmup

    def probe_warmup(self) -> int:
        """The model's warm-up from its ``min_bars`` answer to a one-bar request (see the module
        docstring): ``W + L - 1``.

        Raises:
            ProductionUnavailableError: unreachable, or an answer without the ``min_bars`` wording.
            ContextModelError: the model reads context symbols (one line).
        """
        body = {"inputs": {"columns": list(CANDLE_COLUMNS), "data": [_PROBE_ROW]}}
        try:
            self._post(body)
        except ContextModelError:
            raise
        except ProductionRejectedError as exc:
            found = _MIN_BARS.search(str(exc))
            if found is None:
                raise ProductionUnavailableError(
                    f"cannot learn the warm-up from {self.label}: {exc}; pass --warmup-bars"
                ) from None
            return int(found.group(1)) + int(found.group(2)) - 1
        return 0

    def answer(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Production's answer rows for ``candles`` (columns ``timestamp, open, high, low,
        close, volume``; UTC): :data:`OUTPUT_COLUMNS`, one row per answered bar.

        Raises:
            ProductionUnavailableError, ProductionRejectedError: see the module docstring.
        """
        rows = parse_answer(self._post(request_body(candles)))
        if len(rows):
            last = rows.iloc[-1]
            self.version = last["model_version"]
            self.run_id = None if last["run_id"] is None else str(last["run_id"])
        return rows
