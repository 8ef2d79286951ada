"""The WSGI application: /metrics, /probe, the landing page and the /-/ endpoints."""

from __future__ import annotations

import gzip
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted

from exporter import statuspage
from exporter.config import ScrapeConfig
from exporter.service import Exporter

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

TEXT = "text/plain; charset=utf-8"


def _respond(start: StartResponse, status: str, body: str, ctype: str = TEXT) -> list[bytes]:
    data = body.encode("utf-8")
    start(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


MIN_DEADLINE = 0.05
MAX_DEADLINE = 3600.0  # no scrape waits longer; a huge header value would overflow the wait
OPENMETRICS = "application/openmetrics-text"


def scrape_timeout(environ: dict[str, Any], scrape: ScrapeConfig) -> float:
    """Seconds a scrape may take: Prometheus's X-Prometheus-Scrape-Timeout-Seconds minus the
    configured offset, or scrape.timeout without (or with a malformed) header."""
    header = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
    seconds = scrape.timeout
    if header:
        try:
            seconds = float(header)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds):  # "inf" would overflow the wait, "nan" cut it to 0
            log.debug("ignoring malformed scrape timeout header", extra={"value": header})
            seconds = scrape.timeout
    return min(MAX_DEADLINE, max(MIN_DEADLINE, seconds - scrape.timeout_offset))


def make_app(exporter: Exporter, telemetry_path: str = "/metrics") -> WSGIApp:
    """Build the exporter's WSGI app around a running `Exporter`."""
    exposition = make_wsgi_app(exporter.registry)

    def metrics(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "HEAD":  # HEAD serves the cache, never spends budget
            try:
                exporter.refresh(scrape_timeout(environ, exporter.config.scrape))
            except Exception:  # the cache is still worth serving
                log.exception("refresh failed; serving cached answers")
        # The two formats whose bytes the per-task text cache reproduces are served from it;
        # anything else (a filtered scrape, a format added to prometheus_client later) by it.
        _, content_type = choose_encoder(environ.get("HTTP_ACCEPT") or "")
        openmetrics = content_type.startswith(OPENMETRICS)
        if "name[]" in parse_qs(environ.get("QUERY_STRING", "")) or not (
            openmetrics or content_type.startswith("text/plain")
        ):
            served: Iterable[bytes] = exposition(environ, start)
            return served
        body = exporter.exposition(openmetrics_format=openmetrics)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            # Level 1: a 20 MB exposition compresses in 0.06 s instead of 0.45 s at level 9.
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start("200 OK", headers)
        return [body]

    def probe(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        values = query.get("trans_no", [])
        if len(values) != 1:
            return _respond(
                start, "400 Bad Request", "exactly one trans_no parameter is required\n"
            )
        debug = query.get("debug", ["false"])[-1].lower() in {"1", "true", "yes"}
        if environ.get("REQUEST_METHOD") == "HEAD":
            # The answer's length is only known after asking the API; HEAD never asks.
            start("200 OK", [("Content-Type", TEXT if debug else _EXPOSITION_TYPE)])
            return []
        try:
            result = exporter.probe(
                values[0], debug=debug, timeout=scrape_timeout(environ, exporter.config.scrape)
            )
        except ValueError as exc:
            return _respond(start, "400 Bad Request", f"{exc}\n")
        if debug:
            body = result.debug + "\nmetrics:\n" + result.exposition.decode("utf-8")
            return _respond(start, "200 OK", body)
        return _respond(start, "200 OK", result.exposition.decode("utf-8"), _EXPOSITION_TYPE)

    def reload(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        problems = exporter.reload()
        if problems:
            return _respond(start, "500 Internal Server Error", "\n".join(problems) + "\n")
        return _respond(start, "200 OK", "configuration reloaded\n")

    def landing(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        summary, rows = statuspage.snapshot(exporter, telemetry_path)
        flt = statuspage.Filter.from_query(parse_qs(environ.get("QUERY_STRING", "")))
        page = statuspage.render(summary, rows, flt)
        return _respond(start, "200 OK", page, "text/html")  # <meta charset> names utf-8

    routes: dict[str, tuple[WSGIApp, frozenset[str]]] = {
        telemetry_path: (metrics, READ),
        "/probe": (probe, READ),
        "/-/reload": (reload, frozenset({"POST"})),
        "/-/healthy": (lambda e, s: _respond(s, "200 OK", "Healthy\n"), READ),
        "/-/ready": (
            lambda e, s: (
                _respond(s, "200 OK", "Ready\n")
                if exporter.ready
                else _respond(s, "503 Service Unavailable", "Not ready\n")
            ),
            READ,
        ),
        "/": (landing, READ),
    }

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        route = routes.get(environ.get("PATH_INFO") or "/")
        if route is None:
            return _respond(start, "404 Not Found", "not found\n")
        handler, methods = route
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in methods:
            allow = ", ".join(sorted(methods, key=_METHOD_ORDER.index))
            body = f"method {method} not allowed; use {allow}\n".encode()
            start(
                "405 Method Not Allowed",
                [
                    ("Content-Type", TEXT),
                    ("Content-Length", str(len(body))),
                    ("Allow", allow),
                ],
            )
            return [] if method == "HEAD" else [body]
        if method == "HEAD":
            return _head(handler, environ, start)
        return handler(environ, start)

    return app


READ = frozenset({"GET", "HEAD"})
_METHOD_ORDER = ("GET", "HEAD", "POST")


def _head(handler: WSGIApp, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
    """Answer HEAD with GET's headers (Content-Length included) and no body."""
    captured: list[tuple[str, list[tuple[str, str]]]] = []

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured[:] = [(status, list(headers))]
        return lambda data: None

    result = handler(environ, capture)
    try:
        length = sum(len(chunk) for chunk in result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = captured[0]
    if length and not any(name.lower() == "content-length" for name, _ in headers):
        headers.append(("Content-Length", str(length)))
    start(status, headers)
    return []


_EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"
