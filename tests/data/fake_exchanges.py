"""Exchange HTTP APIs answered offline, in each exchange's real response format.

A :class:`FakeExchangeServer` replaces ``exchange.session.request`` (the ``requests`` call at the
bottom of ccxt's ``Exchange.fetch``), so everything above it is ccxt's own code: URL and signature
building, HTTP-status and exchange-error mapping (``handle_errors``), JSON decoding, market and
candle parsing. Payloads are built from the real candles in ../shared/data, following the public
API documentation of each endpoint:

- Binance: ``GET /api/v3/exchangeInfo``, ``/fapi/v1/exchangeInfo``, ``/api/v3/klines``,
  ``/fapi/v1/klines`` (arrays ``[openTime, "o", "h", "l", "c", "v", closeTime, "quoteVolume",
  trades, "takerBase", "takerQuote", "0"]``, ascending, ``openTime`` in ``[startTime, endTime]``),
  ``/fapi/v1/fundingRate``, ``/futures/data/openInterestHist``.
- Bybit v5: ``/v5/market/instruments-info``, ``/v5/market/kline`` (``result.list`` of
  ``["start", "o", "h", "l", "c", "volume", "turnover"]``, NEWEST first, the newest ``limit`` in
  ``[start, end]``), ``/v5/market/funding/history``, ``/v5/market/open-interest``.
- OKX v5: ``/api/v5/public/instruments``, ``/api/v5/market/(history-)candles`` (``data`` arrays
  ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``, newest first, ``before < ts < after``),
  ``/api/v5/public/funding-rate-history``.

Failures are injected per path: ``timeout`` (``requests.ReadTimeout``), ``429``/``418`` (with the
exchange's own rate-limit body, and a ``Retry-After`` header only when ``retry_after`` is given),
``503``/``502`` (gateway text), ``401`` (Binance -2015).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd
import requests

MS_PER = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}


def _num(x: float) -> str:
    return f"{x:.8f}".rstrip("0").rstrip(".") if x == x else "NaN"


def response(status: int, body: Any, reason: str = "OK", headers: dict[str, str] | None = None,
             url: str = "") -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.reason = reason
    r.url = url
    if isinstance(body, str):
        r._content = body.encode()
        r.headers["Content-Type"] = "text/html"
    else:
        r._content = json.dumps(body).encode()
        r.headers["Content-Type"] = "application/json"
    for k, v in (headers or {}).items():
        r.headers[k] = v
    return r


@dataclass
class Failure:
    """Answer the next ``times`` requests whose path contains ``path`` with ``kind``."""

    path: str
    kind: str  # timeout | 429 | 503 | 502 | 401 | 418
    times: int = 1
    retry_after: str | None = None  # Retry-After header value of a 429/418 (seconds or date)


@dataclass
class Series:
    """Real data for one market: ``candles`` (OHLCV, UTC) per timeframe, funding, open interest."""

    candles: dict[str, pd.DataFrame] = field(default_factory=dict)
    funding: pd.DataFrame | None = None
    open_interest: pd.DataFrame | None = None


def _ms_col(df: pd.DataFrame) -> pd.Series:
    return (df["timestamp"].dt.tz_convert("UTC").astype("datetime64[ms, UTC]")
            .astype("int64"))


class FakeExchangeServer:
    """One exchange's public REST API over in-memory real data.

    Args:
        exchange_id: ``binance``, ``bybit`` or ``okx``.
        spot, perp: data per base/quote pair (``"BTC/USDT"``) for the spot market and the USDT
            perpetual.
    """

    def __init__(self, exchange_id: str, spot: dict[str, Series] | None = None,
                 perp: dict[str, Series] | None = None) -> None:
        self.id = exchange_id
        self.spot = spot or {}
        self.perp = perp or {}
        self.failures: list[Failure] = []
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.errors_served: list[str] = []

    # ---- wiring --------------------------------------------------------------------------

    def attach(self, exchange: Any) -> Any:
        """Route ``exchange``'s HTTP through this server (ccxt's code runs unchanged above)."""
        exchange.session.request = self.request
        return exchange

    def fail(self, path: str, kind: str, times: int = 1, retry_after: str | None = None
             ) -> None:
        self.failures.append(Failure(path, kind, times, retry_after))

    def request(self, method: str, url: str, **_: Any) -> requests.Response:
        parsed = urlparse(url)
        params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        self.calls.append((parsed.path, params))
        for f in self.failures:
            if f.times > 0 and f.path in parsed.path:
                f.times -= 1
                self.errors_served.append(f"{f.kind} {parsed.path}")
                return self._failure(f.kind, url, f.retry_after)
        handler = self._route(parsed.netloc, parsed.path)
        if handler is None:
            return response(404, {"code": -1, "msg": f"no route {parsed.path}"}, "Not Found",
                            url=url)
        return response(200, handler(params), url=url)

    def _failure(self, kind: str, url: str, retry_after: str | None = None
                 ) -> requests.Response:
        if kind == "timeout":
            raise requests.exceptions.ReadTimeout(f"HTTPSConnectionPool: Read timed out. ({url})")
        if kind in ("429", "418"):
            body: Any = {
                "binance": {"code": -1003, "msg": "Too many requests; current limit of IP is "
                            "6000 requests per minute. Please use WebSocket Streams for live "
                            "updates to avoid polling the API."},
                "bybit": {"retCode": 10006, "retMsg": "Too many visits!", "result": {},
                          "retExtInfo": {}, "time": 1},
                "okx": {"code": "50011", "msg": "Too Many Requests", "data": []},
            }[self.id]
            headers = {} if retry_after is None else {"Retry-After": retry_after}
            return response(int(kind), body, "Too Many Requests", headers, url)
        if kind in ("502", "503"):
            return response(int(kind), f"<html><body><h1>{kind} Service Unavailable</h1>"
                            "</body></html>", "Service Unavailable", url=url)
        if kind == "401":
            return response(401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions "
                                  "for action."}, "Unauthorized", url=url)
        raise ValueError(kind)

    def _route(self, host: str, path: str) -> Callable[[dict[str, str]], Any] | None:
        table: dict[str, dict[str, Callable[[dict[str, str]], Any]]] = {
            "binance": {
                "/api/v3/exchangeInfo": lambda p: self._binance_info(False),
                "/fapi/v1/exchangeInfo": lambda p: self._binance_info(True),
                "/api/v3/klines": lambda p: self._binance_klines(p, False),
                "/fapi/v1/klines": lambda p: self._binance_klines(p, True),
                "/fapi/v1/fundingRate": self._binance_funding,
                "/futures/data/openInterestHist": self._binance_oi,
            },
            "bybit": {
                "/v5/market/instruments-info": self._bybit_instruments,
                "/v5/market/kline": self._bybit_kline,
                "/v5/market/funding/history": self._bybit_funding,
                "/v5/market/open-interest": self._bybit_oi,
            },
            "okx": {
                "/api/v5/public/instruments": self._okx_instruments,
                "/api/v5/market/candles": self._okx_candles,
                "/api/v5/market/history-candles": self._okx_candles,
                "/api/v5/public/funding-rate-history": self._okx_funding,
            },
        }
        return table[self.id].get(path)

    # ---- helpers -------------------------------------------------------------------------

    @staticmethod
    def _pair(exchange_symbol: str) -> str:
        s = exchange_symbol.replace("-SWAP", "").replace("-", "")
        for quote in ("USDT", "USDC", "BTC", "ETH"):
            if s.endswith(quote):
                return f"{s[: -len(quote)]}/{quote}"
        return s

    def _candles(self, perp: bool, symbol_id: str, timeframe: str) -> pd.DataFrame:
        book = self.perp if perp else self.spot
        series = book.get(self._pair(symbol_id))
        if series is None or timeframe not in series.candles:
            return pd.DataFrame(columns=["timestamp", "open", "high", "low", "close", "volume"])
        return series.candles[timeframe]

    @staticmethod
    def _between(df: pd.DataFrame, lo: int | None, hi: int | None, lo_open: bool = False,
                 hi_open: bool = False) -> pd.DataFrame:
        ms = _ms_col(df)
        mask = pd.Series(True, index=df.index)
        if lo is not None:
            mask &= (ms > lo) if lo_open else (ms >= lo)
        if hi is not None:
            mask &= (ms < hi) if hi_open else (ms <= hi)
        return df[mask]

    # ---- binance -------------------------------------------------------------------------

    def _binance_info(self, futures: bool) -> dict[str, Any]:
        book = self.perp if futures else self.spot
        symbols = []
        for pair in book:
            base, quote = pair.split("/")
            if futures:
                symbols.append({
                    "symbol": base + quote, "pair": base + quote, "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000, "onboardDate": 1569398400000,
                    "status": "TRADING", "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000", "baseAsset": base, "quoteAsset": quote,
                    "marginAsset": quote, "pricePrecision": 2, "quantityPrecision": 3,
                    "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
                    "underlyingSubType": ["PoW"], "triggerProtect": "0.0500",
                    "liquidationFee": "0.012500", "marketTakeBound": "0.05",
                    "maxMoveOrderLimit": 10000,
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": "556.80",
                         "maxPrice": "4529764", "tickSize": "0.10"},
                        {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000",
                         "minQty": "0.001"},
                        {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120",
                         "minQty": "0.001"},
                        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                        {"filterType": "MIN_NOTIONAL", "notional": "100"},
                        {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
                         "multiplierDown": "0.9500", "multiplierDecimal": "4"}],
                    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                                   "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"]})
            else:
                symbols.append({
                    "symbol": base + quote, "status": "TRADING", "baseAsset": base,
                    "baseAssetPrecision": 8, "quoteAsset": quote, "quotePrecision": 8,
                    "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT",
                                   "TAKE_PROFIT_LIMIT"],
                    "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
                    "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
                    "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": True,
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
                         "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
                        {"filterType": "LOT_SIZE", "minQty": "0.00001000",
                         "maxQty": "9000.00000000", "stepSize": "0.00001000"},
                        {"filterType": "NOTIONAL", "minNotional": "5.00000000",
                         "applyMinToMarket": True, "maxNotional": "9000000.00000000",
                         "applyMaxToMarket": False, "avgPriceMins": 5}],
                    "permissions": [], "permissionSets": [["SPOT", "MARGIN"]],
                    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                    "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER",
                                                        "EXPIRE_BOTH"]})
        out: dict[str, Any] = {"timezone": "UTC", "serverTime": 1735689600000,
                               "rateLimits": [], "exchangeFilters": [], "symbols": symbols}
        if futures:
            out["futuresType"] = "U_MARGINED"
            out["assets"] = []
        return out

    def _binance_klines(self, p: dict[str, str], futures: bool) -> list[list[Any]]:
        tf = p["interval"]
        df = self._between(self._candles(futures, p["symbol"], tf),
                           int(p["startTime"]) if "startTime" in p else None,
                           int(p["endTime"]) if "endTime" in p else None)
        df = df.iloc[: int(p.get("limit", 500))]
        step = MS_PER[tf]
        out = []
        for ms, o, h, lo, c, v in zip(_ms_col(df), df.open, df.high, df.low, df.close,
                                      df.volume, strict=True):
            out.append([int(ms), _num(o), _num(h), _num(lo), _num(c), _num(v), int(ms) + step - 1,
                        _num(v * c), 1000, _num(v / 2), _num(v * c / 2), "0"])
        return out

    def _binance_funding(self, p: dict[str, str]) -> list[dict[str, Any]]:
        series = self.perp.get(self._pair(p["symbol"]))
        if series is None or series.funding is None:
            return []
        df = self._between(series.funding, int(p["startTime"]) if "startTime" in p else None,
                           int(p["endTime"]) if "endTime" in p else None)
        df = df.iloc[: int(p.get("limit", 100))]
        return [{"symbol": p["symbol"], "fundingTime": int(ms), "fundingRate": f"{r:.8f}",
                 "markPrice": "0"} for ms, r in zip(_ms_col(df), df.funding_rate, strict=True)]

    def _binance_oi(self, p: dict[str, str]) -> list[dict[str, Any]]:
        series = self.perp.get(self._pair(p["symbol"]))
        if series is None or series.open_interest is None:
            return []
        df = self._between(series.open_interest, int(p.get("startTime", 0)),
                           int(p["endTime"]) if "endTime" in p else None)
        df = df.iloc[: int(p.get("limit", 30))]
        return [{"symbol": p["symbol"], "sumOpenInterest": _num(a),
                 "sumOpenInterestValue": _num(v), "timestamp": int(ms)}
                for ms, a, v in zip(_ms_col(df), df.open_interest, df.open_interest_usd,
                                    strict=True)]

    # ---- bybit ---------------------------------------------------------------------------

    @staticmethod
    def _bybit(result: dict[str, Any]) -> dict[str, Any]:
        return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                "time": 1735689600000}

    def _bybit_instruments(self, p: dict[str, str]) -> dict[str, Any]:
        cat = p["category"]
        items: list[dict[str, Any]] = []
        if p.get("status") != "PreLaunch":
            if cat == "spot":
                for pair in self.spot:
                    base, quote = pair.split("/")
                    items.append({
                        "symbol": base + quote, "baseCoin": base, "quoteCoin": quote,
                        "innovation": "0", "status": "Trading", "marginTrading": "both",
                        "stTag": "0",
                        "lotSizeFilter": {"basePrecision": "0.000001",
                                          "quotePrecision": "0.00000001",
                                          "minOrderQty": "0.000048",
                                          "maxOrderQty": "71.73956243", "minOrderAmt": "1",
                                          "maxOrderAmt": "2000000"},
                        "priceFilter": {"tickSize": "0.01"},
                        "riskParameters": {"priceLimitRatioX": "0.01",
                                           "priceLimitRatioY": "0.02"}})
            elif cat == "linear":
                for pair in self.perp:
                    base, quote = pair.split("/")
                    items.append({
                        "symbol": base + quote, "contractType": "LinearPerpetual",
                        "status": "Trading", "baseCoin": base, "quoteCoin": quote,
                        "launchTime": "1585526400000", "deliveryTime": "0",
                        "deliveryFeeRate": "", "priceScale": "2",
                        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00",
                                           "leverageStep": "0.01"},
                        "priceFilter": {"minPrice": "0.10", "maxPrice": "199999.80",
                                        "tickSize": "0.10"},
                        "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001",
                                          "qtyStep": "0.001",
                                          "postOnlyMaxOrderQty": "1190.000",
                                          "maxMktOrderQty": "119.000", "minNotionalValue": "5"},
                        "unifiedMarginTrade": True, "fundingInterval": 480,
                        "settleCoin": quote, "copyTrading": "both",
                        "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
                        "isPreListing": False, "preListingInfo": None})
        return self._bybit({"category": cat, "list": items, "nextPageCursor": ""})

    def _bybit_kline(self, p: dict[str, str]) -> dict[str, Any]:
        tf = {"1": "1m", "5": "5m", "60": "1h", "240": "4h", "D": "1d"}[p["interval"]]
        df = self._between(self._candles(p["category"] != "spot", p["symbol"], tf),
                           int(p["start"]) if "start" in p else None,
                           int(p["end"]) if "end" in p else None)
        df = df.iloc[::-1].iloc[: int(p.get("limit", 200))]  # newest first, newest `limit`
        rows = [[str(int(ms)), _num(o), _num(h), _num(lo), _num(c), _num(v), _num(v * c)]
                for ms, o, h, lo, c, v in zip(_ms_col(df), df.open, df.high, df.low, df.close,
                                              df.volume, strict=True)]
        return self._bybit({"symbol": p["symbol"], "category": p["category"], "list": rows})

    def _bybit_funding(self, p: dict[str, str]) -> dict[str, Any]:
        series = self.perp.get(self._pair(p["symbol"]))
        rows: list[dict[str, str]] = []
        if series is not None and series.funding is not None:
            df = self._between(series.funding, int(p["startTime"]) if "startTime" in p else None,
                               int(p["endTime"]) if "endTime" in p else None)
            df = df.iloc[::-1].iloc[: int(p.get("limit", 200))]
            rows = [{"symbol": p["symbol"], "fundingRate": f"{r:.8f}",
                     "fundingRateTimestamp": str(int(ms))}
                    for ms, r in zip(_ms_col(df), df.funding_rate, strict=True)]
        return self._bybit({"category": "linear", "list": rows})

    def _bybit_oi(self, p: dict[str, str]) -> dict[str, Any]:
        series = self.perp.get(self._pair(p["symbol"]))
        rows: list[dict[str, str]] = []
        if series is not None and series.open_interest is not None:
            df = self._between(series.open_interest, int(p.get("startTime", 0)),
                               int(p["endTime"]) if "endTime" in p else None)
            df = df.iloc[::-1].iloc[: int(p.get("limit", 50))]
            rows = [{"openInterest": _num(a), "timestamp": str(int(ms))}
                    for ms, a in zip(_ms_col(df), df.open_interest, strict=True)]
        return self._bybit({"symbol": p["symbol"], "category": "linear", "list": rows,
                            "nextPageCursor": ""})

    # ---- okx -----------------------------------------------------------------------------

    @staticmethod
    def _okx(data: list[Any]) -> dict[str, Any]:
        return {"code": "0", "msg": "", "data": data}

    def _okx_instruments(self, p: dict[str, str]) -> dict[str, Any]:
        kind = p["instType"]
        data = []
        if kind == "SPOT":
            for pair in self.spot:
                base, quote = pair.split("/")
                data.append({
                    "alias": "", "baseCcy": base, "category": "1", "ctMult": "", "ctType": "",
                    "ctVal": "", "ctValCcy": "", "expTime": "", "instFamily": "",
                    "instId": f"{base}-{quote}", "instType": "SPOT", "lever": "10",
                    "listTime": "1548133413000", "lotSz": "0.00000001", "maxIcebergSz":
                    "9999999999.0000000000000000", "maxLmtAmt": "1000000", "maxLmtSz":
                    "9999999999", "maxMktAmt": "1000000", "maxMktSz": "1000000",
                    "maxStopSz": "1000000", "maxTriggerSz": "9999999999.0000000000000000",
                    "maxTwapSz": "9999999999.0000000000000000", "minSz": "0.00001",
                    "optType": "", "quoteCcy": quote, "settleCcy": "", "state": "live",
                    "stk": "", "tickSz": "0.1", "uly": "", "ruleType": "normal"})
        elif kind == "SWAP":
            for pair in self.perp:
                base, quote = pair.split("/")
                data.append({
                    "alias": "", "baseCcy": "", "category": "1", "ctMult": "1",
                    "ctType": "linear", "ctVal": "0.01", "ctValCcy": base, "expTime": "",
                    "instFamily": f"{base}-{quote}", "instId": f"{base}-{quote}-SWAP",
                    "instType": "SWAP", "lever": "100", "listTime": "1573557408000",
                    "lotSz": "0.01", "maxIcebergSz": "100000000.0000000000000000",
                    "maxLmtAmt": "20000000", "maxLmtSz": "100000000", "maxMktAmt": "",
                    "maxMktSz": "12000", "maxStopSz": "12000", "maxTriggerSz":
                    "100000000.0000000000000000", "maxTwapSz": "100000000.0000000000000000",
                    "minSz": "0.01", "optType": "", "quoteCcy": "", "settleCcy": quote,
                    "state": "live", "stk": "", "tickSz": "0.1", "uly": f"{base}-{quote}",
                    "ruleType": "normal"})
        return self._okx(data)

    def _okx_candles(self, p: dict[str, str]) -> dict[str, Any]:
        bar = {"1m": "1m", "5m": "5m", "1H": "1h", "4H": "4h", "1Dutc": "1d"}[p["bar"]]
        inst = p["instId"]
        swap = inst.endswith("-SWAP")
        df = self._between(self._candles(swap, inst, bar),
                           int(p["before"]) if "before" in p else None,
                           int(p["after"]) if "after" in p else None, lo_open=True, hi_open=True)
        df = df.iloc[::-1].iloc[: int(p.get("limit", 100))]
        rows = []
        for ms, o, h, lo, c, v in zip(_ms_col(df), df.open, df.high, df.low, df.close,
                                      df.volume, strict=True):
            vol = v / 0.01 if swap else v  # SWAP: vol in contracts (ctVal 0.01), volCcy in base
            vol_ccy = v if swap else v * c
            rows.append([str(int(ms)), _num(o), _num(h), _num(lo), _num(c), _num(vol),
                         _num(vol_ccy), _num(v * c), "1"])
        return self._okx(rows)

    def _okx_funding(self, p: dict[str, str]) -> dict[str, Any]:
        series = self.perp.get(self._pair(p["instId"]))
        rows: list[dict[str, str]] = []
        if series is not None and series.funding is not None:
            df = self._between(series.funding, int(p["before"]) if "before" in p else None,
                               int(p["after"]) if "after" in p else None, lo_open=True,
                               hi_open=True)
            df = df.iloc[::-1].iloc[: int(p.get("limit", 100))]
            rows = [{"fundingRate": f"{r:.8f}", "fundingTime": str(int(ms)),
                     "instId": p["instId"], "instType": "SWAP", "method": "current_period",
                     "realizedRate": f"{r:.8f}", "formulaType": "noRate"}
                    for ms, r in zip(_ms_col(df), df.funding_rate, strict=True)]
        return self._okx(rows)
