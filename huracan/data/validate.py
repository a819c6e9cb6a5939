"""Great Expectations suites for every data source, and what their failures mean.

One suite per source kind, kept as JSON under ``expectations/`` (``ohlcv.json``,
``funding_rates.json``, ``open_interest.json``, ``liquidations.json``). The suites are BUILT by
:func:`build_suite` (the source of truth, reviewed like code) and written by :func:`write_suites`
(``python -m huracan.data.validate --write-suites``); the committed JSON is what
``tests/data`` compares against the code, and exactly what runs: the runner turns the JSON-ready
dict into a ``gx.ExpectationSuite`` the same way a reader of the JSON would
(``gx.ExpectationSuite(name=..., expectations=..., meta=...)``, ../shared/STACK.md).

Each expectation carries GX's own ``severity`` (``critical``: the data is refused for training;
``warning``: used, but logged) and ``meta`` = ``{"rule": <name in data_quality_logs>,
"description": <the rule in words>}``.

Rules GX has no expectation for on pandas are checked alongside, with the same reporting
(names in the suite's ``meta["huracan"]["checks"]``):

- ``timestamp_timezone`` (critical): the timestamp column is UTC-aware (GX's type expectations
  cannot tell ``datetime64[ns, UTC]`` from naive ``datetime64[ns]`` on pandas).
- ``on_timeframe_grid`` (critical): every timestamp is a multiple of the timeframe since the Unix
  epoch (weekly bars: since Monday 1970-01-05, the exchanges' week start), within the suite's
  tolerance (funding: 1 s, as exchanges stamp settlements with 1-20 ms of jitter).
- ``gap`` (warning by default, :class:`ValidationConfig`): each run of missing bars, reported
  exactly: first missing bar, last missing bar, bars missing. With a download window, the missing
  bars before the first and after the last row count too.
- ``coverage`` (critical by default): rows >= ``coverage_threshold`` × expected bars, checked by
  GX's ``ExpectTableRowCountToBeBetween`` with the minimum passed as the suite parameter
  ``min_rows`` at run time; the expected count comes from the window (or first..last row).
- ``has_value`` (open interest, critical): each row has open interest in contracts or in USD.

Liquidation sides: files in Binance's forceOrder format give the ORDER side; ``SELL`` (a long was
force-sold) is normalised to ``long`` and ``BUY`` to ``short`` before validation (the convention
of :mod:`huracan.data.ingest`); any other value stays as it is and fails ``side_in_set``.

Severity policy of coverage and gaps (a config choice, :class:`ValidationConfig`): gaps are
warnings (real exchanges have outages; the data is usable, the feature builder never fills across
a hole), coverage below the threshold is critical (a batch that misses more than 5 % of its bars
is a degraded batch: training refuses it unless ``data.allow_degraded=true``).

``great_expectations`` is imported lazily (about 2.5 s): importing this module is cheap.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from huracan.data.ohlcv import (
    OHLCV_COLUMNS,
    PRICE_COLUMNS,
    DataValidationError,
    Gap,
    find_gaps,
    infer_timeframe,
    timeframe_to_timedelta,
)
from huracan.data.quality import QualityIssue, QualitySink, record
from huracan.resources import expectations_dir

log = logging.getLogger("huracan.data_quality")

#: Where the committed suites live (the repository's ``expectations/`` folder, or its copy in an
#: installed wheel: :func:`huracan.resources.expectations_dir`).
EXPECTATIONS_DIR = expectations_dir()

#: Suite name of each source kind; the CLI's names (``funding``, ``open-interest``) map here.
SUITES: dict[str, str] = {
    "ohlcv": "ohlcv",
    "funding": "funding_rates",
    "funding_rates": "funding_rates",
    "open-interest": "open_interest",
    "open_interest": "open_interest",
    "liquidations": "liquidations",
}
SUITE_NAMES: tuple[str, ...] = ("ohlcv", "funding_rates", "open_interest", "liquidations")

#: A funding rate beyond ±10 % per interval is refused (same bound as the brain store's ingest,
#: :data:`huracan.data.ingest.MAX_ABS_FUNDING_RATE`; it catches percent-vs-fraction mix-ups).
FUNDING_RATE_LIMIT = 0.1
#: Beyond ±1 % per interval a funding rate is unusual (exchange caps for majors are 0.3-0.75 %,
#: 2-3 % for some altcoins): logged as a warning.
FUNDING_RATE_UNUSUAL = 0.01
NUMERIC_TYPES = ["float64", "float32", "int64", "int32"]
LIQUIDATION_SIDES = ("long", "short")
#: Binance forceOrder ORDER side -> liquidated POSITION side (../shared/data/README.md).
ORDER_SIDE_TO_POSITION = {"SELL": "long", "BUY": "short", "sell": "long", "buy": "short"}
SEVERITIES = ("critical", "warning", "info")
#: Monday 1970-01-05: weekly candles open on Mondays (Binance, Bybit, OKX).
_WEEK_ANCHOR = pd.Timestamp("1970-01-05", tz="UTC")
_EPOCH = pd.Timestamp(0, tz="UTC")


# --------------------------------------------------------------------------------------------
# Suites (JSON-ready dicts; no GX import needed to build or compare them)
# --------------------------------------------------------------------------------------------

def _e(gx_type: str, rule: str, description: str, severity: str = "critical",
       **kwargs: Any) -> dict[str, Any]:
    return {"type": gx_type, "kwargs": kwargs, "meta": {"rule": rule, "description": description},
            "severity": severity}


def _exist(columns: Sequence[str]) -> list[dict[str, Any]]:
    return [_e("expect_column_to_exist", "missing_column", f"column {c!r} exists", column=c)
            for c in columns]


def _not_null(columns: Sequence[str]) -> list[dict[str, Any]]:
    return [_e("expect_column_values_to_not_be_null", "not_null", f"{c} is not null", column=c)
            for c in columns]


def _numeric(columns: Sequence[str]) -> list[dict[str, Any]]:
    return [_e("expect_column_values_to_be_in_type_list", "numeric_type",
               f"{c} has a numeric dtype", column=c, type_list=NUMERIC_TYPES) for c in columns]


def _time_order(strict: bool = True, severity: str = "critical") -> list[dict[str, Any]]:
    out = []
    if strict:
        out.append(_e("expect_column_values_to_be_unique", "unique_timestamp",
                      "timestamps are unique", column="timestamp"))
    out.append(_e("expect_column_values_to_be_increasing",
                  "increasing_timestamp" if strict else "events_in_time_order",
                  "timestamps strictly increase" if strict else "timestamps never go back",
                  severity, column="timestamp", strictly=strict))
    return out


def _coverage() -> dict[str, Any]:
    return _e("expect_table_row_count_to_be_between", "coverage",
              "rows >= coverage_threshold x expected bars",
              min_value={"$PARAMETER": "min_rows"})


def _pair(a: str, b: str, rule: str) -> dict[str, Any]:
    return _e("expect_column_pair_values_a_to_be_greater_than_b", rule, f"{a} >= {b}",
              column_A=a, column_B=b, or_equal=True, ignore_row_if="either_value_is_missing")


def _meta(kind: str, required: Sequence[str], checks: Sequence[str], *,
          one_of: Sequence[str] = (), grid_tolerance_ms: int = 0, default_timeframe: str | None
          = None, source: str) -> dict[str, Any]:
    return {"huracan": {"kind": kind, "required_columns": list(required),
                        "one_of_columns": list(one_of), "checks": list(checks),
                        "grid_tolerance_ms": grid_tolerance_ms,
                        "default_timeframe": default_timeframe,
                        "conventions": source}}


def build_suite(name: str) -> dict[str, Any]:
    """The suite ``name`` (a key of :data:`SUITES`) as a JSON-ready dict:
    ``{"name", "expectations": [{"type", "kwargs", "meta", "severity"}], "meta"}``.

    Raises:
        KeyError: an unknown suite name.
    """
    name = SUITES[name]
    grid_checks = ["timestamp_timezone", "on_timeframe_grid", "gap", "coverage"]
    if name == "ohlcv":
        cols = list(OHLCV_COLUMNS)
        exps = [*_exist(cols), *_numeric(cols[1:]), *_not_null(cols), *_time_order()]
        exps += [_e("expect_column_values_to_be_between", "positive_price", f"{c} > 0",
                    column=c, min_value=0, strict_min=True) for c in PRICE_COLUMNS]
        exps.append(_e("expect_column_values_to_be_between", "non_negative_volume",
                       "volume >= 0", column="volume", min_value=0))
        exps += [_pair("high", "low", "high_ge_low"),
                 _pair("high", "open", "high_ge_open_close"),
                 _pair("high", "close", "high_ge_open_close"),
                 _pair("open", "low", "low_le_open_close"),
                 _pair("close", "low", "low_le_open_close"),
                 _coverage()]
        meta = _meta(name, cols, grid_checks, source="timestamp = candle OPEN time, UTC; prices "
                     "in quote currency; volume in base units (../shared/data/README.md)")
    elif name == "funding_rates":
        cols = ["timestamp", "funding_rate"]
        exps = [*_exist(cols), *_numeric(cols[1:]), *_not_null(cols), *_time_order(),
                _e("expect_column_values_to_be_between", "funding_rate_bounds",
                   f"|funding_rate| <= {FUNDING_RATE_LIMIT} per interval (a fraction: 0.0001 = "
                   "0.01 %)", column="funding_rate", min_value=-FUNDING_RATE_LIMIT,
                   max_value=FUNDING_RATE_LIMIT),
                _e("expect_column_values_to_be_between", "funding_rate_unusual",
                   f"|funding_rate| <= {FUNDING_RATE_UNUSUAL} per interval", "warning",
                   column="funding_rate", min_value=-FUNDING_RATE_UNUSUAL,
                   max_value=FUNDING_RATE_UNUSUAL),
                _coverage()]
        meta = _meta(name, cols, grid_checks, grid_tolerance_ms=1000, default_timeframe="8h",
                     source="timestamp = settlement time, UTC (1-20 ms exchange jitter "
                     "tolerated); funding_rate = fraction per interval, positive = longs pay")
    elif name == "open_interest":
        value_cols = ["open_interest", "open_interest_usd"]
        exps = [*_exist(["timestamp"]), *_numeric(value_cols), *_not_null(["timestamp"]),
                *_time_order()]
        exps += [_e("expect_column_values_to_be_between", "non_negative_open_interest",
                    f"{c} >= 0", column=c, min_value=0) for c in value_cols]
        exps.append(_coverage())
        meta = _meta(name, ["timestamp"], [*grid_checks, "has_value"], one_of=value_cols,
                     source="open_interest in contracts/base units, open_interest_usd in USD; at "
                     "least one per row")
    elif name == "liquidations":
        cols = ["timestamp", "symbol", "side", "price", "quantity"]
        exps = [*_exist(cols), *_numeric(["price", "quantity"]), *_not_null(cols),
                _e("expect_column_values_to_be_in_set", "side_in_set",
                   "side is the liquidated position: long or short", column="side",
                   value_set=list(LIQUIDATION_SIDES)),
                _e("expect_column_values_to_be_between", "positive_price", "price > 0",
                   column="price", min_value=0, strict_min=True),
                _e("expect_column_values_to_be_between", "positive_quantity", "quantity > 0",
                   column="quantity", min_value=0, strict_min=True),
                *_time_order(strict=False, severity="warning")]
        meta = _meta(name, cols, ["timestamp_timezone"], source="one row per forced order; "
                     "side = liquidated position (Binance order side SELL -> long, BUY -> short)")
    else:  # pragma: no cover - SUITES holds only the names above
        raise KeyError(name)
    return {"name": name, "expectations": exps, "meta": meta}


def write_suites(directory: str | Path = EXPECTATIONS_DIR) -> list[Path]:
    """Write every suite as ``<directory>/<name>.json`` (sorted keys, 2-space indent)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SUITE_NAMES:
        path = directory / f"{name}.json"
        path.write_text(json.dumps(build_suite(name), indent=2, sort_keys=True) + "\n",
                        encoding="utf-8")
        paths.append(path)
    return paths


def load_suite(path: str | Path) -> dict[str, Any]:
    """A suite JSON file as a dict (the format :func:`build_suite` returns)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _columns_of(exp: dict[str, Any]) -> list[str]:
    kw = exp["kwargs"]
    return [kw[k] for k in ("column", "column_A", "column_B") if k in kw]


# --------------------------------------------------------------------------------------------
# Running GX
# --------------------------------------------------------------------------------------------

class SuiteRunner:
    """A GX ephemeral context with one pandas whole-dataframe batch definition; runs suites.

    Create one per process or job and reuse it (creating it imports GX, about 2.5 s the first
    time). Progress bars and analytics are off.
    """

    def __init__(self) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False,
                                                                  metric_calculations=False)
        self._batch = (self.context.data_sources.add_pandas("huracan")
                       .add_dataframe_asset("frame")
                       .add_batch_definition_whole_dataframe("whole"))

    def gx_suite(self, suite: dict[str, Any]) -> Any:
        """``suite`` (a JSON-ready dict) as a ``gx.ExpectationSuite``."""
        return self._gx.ExpectationSuite(name=suite["name"],
                                         expectations=[dict(e) for e in suite["expectations"]],
                                         meta=suite.get("meta", {}))

    def run(self, frame: pd.DataFrame, suite: dict[str, Any],
            parameters: dict[str, Any] | None = None) -> list[Any]:
        """Validate ``frame`` against ``suite``; the ``ExpectationValidationResult`` objects.

        Expectations on columns that ``frame`` lacks are left out (``missing_column`` reports
        the column once, instead of one evaluation error per rule).
        """
        present = set(frame.columns)
        kept = dict(suite, expectations=[e for e in suite["expectations"]
                                         if e["type"] == "expect_column_to_exist"
                                         or set(_columns_of(e)) <= present])
        batch = self._batch.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(self.gx_suite(kept), expectation_parameters=parameters or {},
                                result_format="SUMMARY")
        return list(result.results)


@functools.lru_cache(maxsize=1)
def shared_runner() -> SuiteRunner:
    """The process's :class:`SuiteRunner`, created on first use.

    A deliberate exception to "no module-level singletons": the runner holds no connection or
    external state (an in-memory GX context), and creating it costs 1.7 s, which every job of a
    multirun in one process would otherwise pay again before training (5 jobs: 8.5 s).
    """
    return SuiteRunner()


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ValidationConfig:
    """Operational knobs of validation (the suites hold the rules themselves).

    Attributes:
        coverage_threshold: minimum fraction of the expected bars that must be present (0.95).
        coverage_severity: ``critical`` (default: a degraded batch is refused for training) or
            ``warning``.
        gap_severity: severity of each missing range (``warning`` by default).
        max_examples: failing rows quoted per rule in ``details`` and in the one-line message.
    """

    coverage_threshold: float = 0.95
    coverage_severity: str = "critical"
    gap_severity: str = "warning"
    max_examples: int = 5

    def __post_init__(self) -> None:
        if not 0.0 <= self.coverage_threshold <= 1.0:
            raise ValueError(f"coverage_threshold must be in [0, 1], got "
                             f"{self.coverage_threshold}")
        for name in ("coverage_severity", "gap_severity"):
            if getattr(self, name) not in SEVERITIES:
                raise ValueError(f"{name} must be one of {SEVERITIES}")


@dataclass
class ValidationReport:
    """The outcome of one suite run on one batch.

    Attributes:
        kind: suite name (``ohlcv``, ``funding_rates``, ``open_interest``, ``liquidations``).
        source: file path or download source (``binance:BTC/USDT:1h``).
        rows: rows validated.
        timeframe: bar size used for the grid/gap/coverage checks (``None``: not applicable).
        issues: one per failing rule (GX expectation or pandas check) and one per gap.
        gaps: the missing ranges.
        expected_bars: bars the window should hold (``None`` without a timeframe).
        coverage: present on-grid bars / expected bars.
        expectations: GX expectations evaluated.
        seconds: wall time of the validation.
    """

    kind: str
    source: str
    symbol: str | None
    rows: int
    timeframe: str | None
    issues: list[QualityIssue] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    expected_bars: int | None = None
    coverage: float | None = None
    expectations: int = 0
    seconds: float = 0.0

    @property
    def critical(self) -> list[QualityIssue]:
        return [i for i in self.issues if i.severity == "critical"]

    @property
    def warnings(self) -> list[QualityIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def passed(self) -> bool:
        """True when no critical rule failed."""
        return not self.critical

    @property
    def failed_rules(self) -> list[str]:
        """Names of the critical rules that failed, in report order, without repeats."""
        return list(dict.fromkeys(i.issue_type for i in self.critical))

    def lines(self) -> list[str]:
        """One line per finding (critical first)."""
        ordered = self.critical + [i for i in self.issues if i.severity != "critical"]
        return [str(i.details.get("message", i.issue_type)) for i in ordered]

    def summary(self) -> str:
        """One line: rows, timeframe, coverage, gaps, verdict."""
        parts = [f"{self.source}: {self.kind}, {self.rows} rows"]
        if self.timeframe:
            parts.append(self.timeframe)
        if self.coverage is not None and self.expected_bars is not None:
            parts.append(f"coverage {self.coverage:.2%} of {self.expected_bars} bars")
        if self.timeframe:
            missing = sum(g.bars_missing for g in self.gaps)
            parts.append(f"{len(self.gaps)} gap(s), {missing} bar(s) missing")
        elif self.kind != "liquidations":
            parts.append("timeframe unknown: grid, gap and coverage checks skipped")
        parts.append(f"{len(self.critical)} critical, {len(self.warnings)} warning(s)")
        verdict = "PASS" if self.passed else "FAIL (" + ", ".join(self.failed_rules) + ")"
        return ", ".join(parts) + f" -> {verdict}"


class DegradedDataError(DataValidationError):
    """Critical expectations failed and ``data.allow_degraded`` is false: training refuses the
    data. ``str(err)`` is one line naming the source, the failing rules and the way out."""


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def _plain(value: Any) -> Any:
    """JSON-friendly copy of a GX result value (numpy scalars, timestamps, tuples)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(pd.Timestamp(value))
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class _Builder:
    """Collects issues for one report with uniform one-line messages."""

    def __init__(self, frame: pd.DataFrame, source: str, symbol: str | None, kind: str,
                 config: ValidationConfig) -> None:
        self.frame = frame
        self.source = source
        self.symbol = symbol
        self.kind = kind
        self.config = config
        self.issues: list[QualityIssue] = []
        self.coverage: dict[str, Any] = {}

    def timestamp_at(self, row: int) -> str | None:
        if "timestamp" not in self.frame.columns or not 0 <= row < len(self.frame):
            return None
        return str(self.frame["timestamp"].iloc[row])

    def add(self, rule: str, severity: str, what: str, details: dict[str, Any]) -> None:
        message = f"{self.source}: {what} [rule: {rule}, {severity}]"
        self.issues.append(QualityIssue(self.source, rule, severity,
                                        {"rule": rule, "suite": self.kind, **details,
                                         "message": message}, self.symbol))

    def rows(self, rule: str, severity: str, column: str, rows: Sequence[int],
             values: Sequence[Any], count: int, description: str,
             extra: dict[str, Any] | None = None) -> None:
        n = self.config.max_examples
        rows, values = list(rows)[:n], list(values)[:n]
        first = rows[0] if rows else None
        where = f"column {column!r}"
        if first is not None:
            ts = self.timestamp_at(first)
            where += f" row {first}" + (f" (timestamp {ts})" if ts and column != "timestamp"
                                        else "")
        shown = ", ".join(_fmt(v) for v in values)
        what = (f"{where}: value(s) {shown}: {description} broken in {count} row(s)"
                if values else f"{where}: {description} broken in {count} row(s)")
        self.add(rule, severity, what, {
            "column": column, "rows": [int(r) for r in rows], "values": _plain(values),
            "timestamps": [self.timestamp_at(int(r)) for r in rows], "count": int(count),
            "expectation": description, **(extra or {})})


def _issues_from_gx(b: _Builder, results: list[Any]) -> int:
    """Failed GX results -> issues; returns the number of expectations evaluated."""
    for res in results:
        if res.success:
            continue
        cfg = res.expectation_config
        meta = cfg.meta or {}
        rule = meta.get("rule", cfg.type)
        severity = str(getattr(cfg.severity, "value", cfg.severity) or "critical")
        description = meta.get("description", cfg.type)
        kw = cfg.kwargs
        column = kw.get("column") or f"{kw.get('column_A')} vs {kw.get('column_B')}"
        exc = res.exception_info or {}
        raised = exc.get("raised_exception") if isinstance(exc, dict) else False
        extra = {"gx_expectation": cfg.type}
        if raised:
            msg = str(exc.get("exception_message", "")).splitlines()[0:1]
            b.add(rule, severity, f"column {column!r}: {description} could not be evaluated: "
                  f"{msg[0] if msg else 'error'}", {"column": column, **extra})
        elif cfg.type == "expect_column_to_exist":
            b.add(rule, severity, f"missing column {kw['column']!r}; found "
                  f"{list(b.frame.columns)}", {"column": kw["column"], **extra})
        elif cfg.type == "expect_column_values_to_be_in_type_list":
            observed = res.result.get("observed_value")
            b.add(rule, severity, f"column {kw['column']!r} has dtype "
                  f"{b.frame[kw['column']].dtype} ({observed}); expected one of "
                  f"{kw['type_list']}", {"column": kw["column"], "observed": str(observed),
                                         **extra})
        elif cfg.type == "expect_table_row_count_to_be_between":
            c = b.coverage
            b.add(rule, b.config.coverage_severity,
                  f"{res.result.get('observed_value')} rows, {c['present']} of {c['expected']} "
                  f"expected {c['timeframe']} bars present (coverage {c['coverage']:.2%} < "
                  f"threshold {c['threshold']:.0%}; at least {c['min_rows']} rows required)",
                  {**c, "missing_bars": c["expected"] - c["present"], **extra})
        else:
            r = res.result
            b.rows(rule, severity, column, r.get("partial_unexpected_index_list") or [],
                   r.get("partial_unexpected_list") or [], r.get("unexpected_count", 0),
                   description, extra)
    return len(results)


# --------------------------------------------------------------------------------------------
# pandas checks
# --------------------------------------------------------------------------------------------

def coerce_timestamps(frame: pd.DataFrame, column: str = "timestamp") -> pd.DataFrame:
    """``frame`` with ``column`` as datetimes: epoch numbers are read as milliseconds UTC, text
    is parsed as ISO 8601 (offsets converted to UTC); naive datetimes STAY naive, so that
    ``timestamp_timezone`` fails on them rather than a time zone being guessed; text that does
    not parse becomes NaT (``not_null`` fails). Returns ``frame`` itself when nothing changes."""
    if column not in frame.columns:
        return frame
    col = frame[column]
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        if str(col.dt.tz) == "UTC":
            return frame
        converted = col.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(col):
        return frame
    elif pd.api.types.is_numeric_dtype(col):
        converted = pd.to_datetime(col, unit="ms", utc=True, errors="coerce")
    else:
        try:
            converted = pd.to_datetime(col, errors="coerce", format="ISO8601")
        except (ValueError, TypeError):  # mixed offsets: every value is aware, convert to UTC
            converted = pd.to_datetime(col, errors="coerce", format="ISO8601", utc=True)
        if not pd.api.types.is_datetime64_any_dtype(converted):
            converted = pd.to_datetime(converted, errors="coerce", utc=True)
        elif isinstance(converted.dtype, pd.DatetimeTZDtype):
            converted = converted.dt.tz_convert("UTC")
    out = frame.copy()
    out[column] = converted
    return out


def _grid_anchor(timeframe: str) -> pd.Timestamp:
    return _WEEK_ANCHOR if timeframe.endswith("w") else _EPOCH


def _grid_offsets(ts: pd.Series, timeframe: str) -> np.ndarray:
    """Signed distance (ns) of each timestamp from the nearest grid point."""
    step = timeframe_to_timedelta(timeframe).value
    ns = (ts - _grid_anchor(timeframe)).to_numpy("timedelta64[ns]").astype("int64")
    rem = np.mod(ns, step)
    return np.where(rem > step // 2, rem - step, rem)


def _snap(ts: pd.Series, timeframe: str) -> pd.Series:
    offsets = _grid_offsets(ts, timeframe)
    return ts - pd.to_timedelta(offsets, unit="ns")


def _grid_window(first: pd.Timestamp, last: pd.Timestamp, timeframe: str) -> int:
    step = timeframe_to_timedelta(timeframe)
    return int((last - first) / step) + 1


def _window_bars(start: pd.Timestamp, end: pd.Timestamp, timeframe: str
                 ) -> tuple[pd.Timestamp, pd.Timestamp, int]:
    """First and last grid point in ``[start, end)`` and how many there are."""
    step = timeframe_to_timedelta(timeframe)
    anchor = _grid_anchor(timeframe)
    first = anchor + step * math.ceil((start - anchor) / step)
    last = anchor + step * (math.ceil((end - anchor) / step) - 1)
    if last < first:
        return first, last, 0
    return first, last, int((last - first) / step) + 1


def _check_time_grid(b: _Builder, ts: pd.Series, timeframe: str, tolerance_ms: int,
                     window: tuple[pd.Timestamp, pd.Timestamp] | None,
                     ) -> tuple[list[Gap], int, float, int]:
    """Grid and gap checks; returns ``(gaps, expected_bars, coverage, min_rows)``."""
    valid = ts.dropna()
    offsets = _grid_offsets(valid, timeframe) if len(valid) else np.array([], dtype="int64")
    off = np.abs(offsets) > tolerance_ms * 1_000_000
    if off.any():
        rows = valid.index[off]
        b.rows("on_timeframe_grid", "critical", "timestamp", list(rows),
               [str(valid[r]) for r in rows[: b.config.max_examples]], int(off.sum()),
               f"timestamp on the {timeframe} grid" + (f" (±{tolerance_ms} ms)"
                                                       if tolerance_ms else ""),
               {"offsets_s": [float(o) / 1e9 for o in offsets[off][: b.config.max_examples]]})
    on_grid = pd.Series(_snap(valid[~off], timeframe).unique()).sort_values(ignore_index=True)
    step = timeframe_to_timedelta(timeframe)
    gaps = find_gaps(on_grid, timeframe)
    if window is not None:
        first, last, expected = _window_bars(window[0], window[1], timeframe)
        present = on_grid[(on_grid >= first) & (on_grid <= last)]
        if expected > 0 and present.empty:
            gaps = [Gap(first, last, expected)]
        elif expected > 0:
            lead = int((present.iloc[0] - first) / step)
            trail = int((last - present.iloc[-1]) / step)
            inner = find_gaps(present, timeframe)
            gaps = ([Gap(first, present.iloc[0] - step, lead)] if lead else []) + inner + (
                [Gap(present.iloc[-1] + step, last, trail)] if trail else [])
        n_present = len(present)
    else:
        expected = _grid_window(on_grid.iloc[0], on_grid.iloc[-1], timeframe) if len(
            on_grid) else 0
        n_present = len(on_grid)
    for g in gaps:
        hours = g.bars_missing * step / pd.Timedelta(hours=1)
        b.add("gap", b.config.gap_severity,
              f"gap {g.start} -> {g.end}: {g.bars_missing} {timeframe} bar(s) missing "
              f"({hours:g} h)",
              {"start": str(g.start), "end": str(g.end), "bars_missing": g.bars_missing,
               "timeframe": timeframe, "hours": hours})
    coverage = n_present / expected if expected else 1.0
    # GX's row-count expectation enforces it (suite parameter ``min_rows``); these numbers
    # explain its failure.
    min_rows = math.ceil(expected * b.config.coverage_threshold - 1e-9)
    b.coverage = {"present": n_present, "expected": expected, "coverage": coverage,
                  "threshold": b.config.coverage_threshold, "timeframe": timeframe,
                  "min_rows": min_rows}
    return gaps, expected, coverage, min_rows


def _prepare(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    out = coerce_timestamps(frame.reset_index(drop=True))
    if kind == "liquidations" and "side" in out.columns:
        side = out["side"]
        mapped = side.map(ORDER_SIDE_TO_POSITION)
        if mapped.notna().any():
            out = out.assign(side=mapped.where(mapped.notna(), side))
    return out


def validate_frame(
    frame: pd.DataFrame,
    kind: str,
    *,
    source: str,
    symbol: str | None = None,
    timeframe: str | None = None,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    config: ValidationConfig | None = None,
    sink: QualitySink | None = None,
    runner: SuiteRunner | None = None,
    suite: dict[str, Any] | None = None,
) -> ValidationReport:
    """Run the ``kind`` suite (and its pandas checks) on ``frame`` and log every finding.

    Args:
        frame: one batch; columns as the suite requires (``timestamp`` UTC-aware; epoch
            milliseconds and ISO-8601 text with offsets are accepted and converted).
        kind: ``ohlcv``, ``funding``/``funding_rates``, ``open-interest``/``open_interest`` or
            ``liquidations``.
        source: file path or download source, quoted in every message.
        symbol: market symbol for the data-quality log.
        timeframe: bar size for the grid/gap/coverage checks; default: the suite's
            (funding ``8h``), else inferred from the timestamps (``None`` when it cannot be:
            those checks are then skipped and the report says so).
        window: ``[start, end)`` the batch should cover (a download request): coverage and
            edge gaps are measured against it; default: first..last row.
        config: thresholds and severities (:class:`ValidationConfig`).
        sink: where each finding is written (e.g. ``DbQualitySink`` -> ``data_quality_logs``);
            every finding is also logged (:func:`huracan.data.quality.record`).
        runner: a :class:`SuiteRunner` to reuse (one is created otherwise).
        suite: the suite dict to run (default :func:`build_suite` ``(kind)``).

    Returns:
        The report; ``report.passed`` is False when a critical rule failed. Never raises for
        bad data (see :func:`validate_for_training` for the refusing variant).
    """
    t0 = time.perf_counter()
    config = config or ValidationConfig()
    suite = suite or build_suite(kind)
    name = suite["name"]
    hmeta = suite.get("meta", {}).get("huracan", {})
    checks = set(hmeta.get("checks", []))
    df = _prepare(frame, name)
    b = _Builder(df, source, symbol, name, config)

    one_of = [c for c in hmeta.get("one_of_columns", []) if c in df.columns]
    if hmeta.get("one_of_columns") and not one_of:
        b.add("missing_column", "critical", f"missing column(s): one of "
              f"{hmeta['one_of_columns']} is required; found {list(df.columns)}",
              {"missing": hmeta["one_of_columns"]})
    if "has_value" in checks and one_of:
        empty = df[one_of].isna().all(axis=1).to_numpy()
        if empty.any():
            rows = np.flatnonzero(empty)
            b.rows("has_value", "critical", "/".join(one_of), list(rows), [], int(empty.sum()),
                   "open interest given in contracts or USD")

    ts = df["timestamp"] if "timestamp" in df.columns else None
    aware = ts is not None and isinstance(ts.dtype, pd.DatetimeTZDtype)
    if ts is not None and "timestamp_timezone" in checks and not aware:
        b.add("timestamp_timezone", "critical",
              f"column 'timestamp' has dtype {ts.dtype}: naive or not datetimes; expected "
              "UTC-aware timestamps (e.g. datetime64[ms, UTC] or ISO 8601 with offset)",
              {"column": "timestamp", "dtype": str(ts.dtype)})

    gaps: list[Gap] = []
    expected: int | None = None
    coverage: float | None = None
    min_rows = 0
    grid = {"on_timeframe_grid", "gap", "coverage"} & checks
    tf = timeframe or hmeta.get("default_timeframe")
    if grid and aware and ts is not None:
        if not tf:
            try:
                tf = infer_timeframe(ts)
            except ValueError:  # no regular spacing to check against: the grid rules skip
                tf = None
        if tf is not None:
            timeframe_to_timedelta(tf)  # ValueError on a bad --timeframe
            gaps, expected, coverage, min_rows = _check_time_grid(
                b, ts, tf, int(hmeta.get("grid_tolerance_ms", 0)),
                None if window is None else (pd.Timestamp(window[0]), pd.Timestamp(window[1])))
    elif not grid:
        tf = None

    runner = runner or shared_runner()
    results = runner.run(df, suite, {"min_rows": min_rows})
    n = _issues_from_gx(b, results)
    report = ValidationReport(name, source, symbol, len(df), tf, b.issues, gaps, expected,
                              coverage, n, time.perf_counter() - t0)
    for issue in report.issues:
        record(issue, sink)
    return report


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a Parquet or CSV file for validation.

    Raises:
        DataValidationError: file missing, of another type, or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(str(path), "file_exists", "file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
    except Exception as exc:  # the reader's own error type varies by format
        raise DataValidationError(str(path), "readable", f"cannot read file: {exc}") from exc
    raise DataValidationError(str(path), "file_format",
                              f"unsupported file type {suffix!r} (expected .parquet or .csv)")


def validate_file(path: str | Path, kind: str, *, timeframe: str | None = None,
                  symbol: str | None = None, config: ValidationConfig | None = None,
                  sink: QualitySink | None = None, runner: SuiteRunner | None = None
                  ) -> ValidationReport:
    """:func:`validate_frame` on a Parquet/CSV file (``source`` = the path).

    Raises:
        DataValidationError: the file cannot be read at all (see :func:`read_table`).
    """
    frame = read_table(path)
    return validate_frame(frame, kind, source=str(path), symbol=symbol, timeframe=timeframe,
                          config=config, sink=sink, runner=runner)


def validate_for_training(
    frame: pd.DataFrame,
    timeframe: str,
    source: str,
    symbol: str | None = None,
    sink: QualitySink | None = None,
    allow_degraded: bool = False,
    *,
    config: ValidationConfig | None = None,
    runner: SuiteRunner | None = None,
    record_gaps: bool = True,
) -> list[QualityIssue]:
    """The training gate: run the OHLCV suite on the candles a model is about to train on.

    Every finding is written to ``sink``. When a critical expectation fails, training is
    refused unless ``allow_degraded`` (``data.allow_degraded=true``), in which case the issues
    are returned and a warning says the run goes on with degraded data.

    Args:
        frame: OHLCV candles (``timestamp`` UTC-aware), as loaded for training.
        timeframe: their bar size (``1h``).
        source: where they came from (file path), quoted in messages.
        symbol: market symbol for the log.
        sink: data-quality sink (``JsonlQualitySink``, ``DbQualitySink``).
        allow_degraded: train despite failing critical expectations.
        record_gaps: write ``gap`` findings to ``sink`` (False when the loader logged them).

    Returns:
        All findings (critical and warnings).

    Raises:
        DegradedDataError: critical expectations failed and ``allow_degraded`` is False; the
            message names each failing rule and its first finding.
    """
    report = validate_frame(frame, "ohlcv", source=source, symbol=symbol, timeframe=timeframe,
                            config=config, runner=runner, sink=None)
    for issue in report.issues:
        if record_gaps or issue.issue_type != "gap":
            record(issue, sink)
    if report.passed:
        return report.issues
    first: dict[str, QualityIssue] = {}
    for issue in report.critical:
        first.setdefault(issue.issue_type, issue)
    reasons = "; ".join(str(i.details.get("message", r)).removeprefix(f"{source}: ")
                        for r, i in first.items())
    if allow_degraded:
        log.warning(
            "%s: training on DEGRADED data (data.allow_degraded=true): %s", source, reasons)
        return report.issues
    raise DegradedDataError(
        source, report.failed_rules[0],
        f"{len(report.critical)} critical expectation failure(s) "
        f"({', '.join(report.failed_rules)}): {reasons}; refusing to train "
        "(set data.allow_degraded=true to train on it anyway)",
        {"rules": report.failed_rules, "critical": len(report.critical)})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m huracan.data.validate --write-suites [DIR]``: regenerate the JSON suites."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-suites", nargs="?", const=str(EXPECTATIONS_DIR), metavar="DIR",
                        help=f"write the suites as JSON (default {EXPECTATIONS_DIR})")
    args = parser.parse_args(argv)
    if args.write_suites:
        for p in write_suites(args.write_suites):
            print(p)
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
