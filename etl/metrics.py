"""Prometheus metrics of a running `etl run --metrics-port N` (SPEC §12).

A private `CollectorRegistry` holds one custom collector that reads the run's own
counters (the `RunReport`, the loader's `LoadStats`, the progress display's ETA) at
scrape time, so nothing is counted twice and the numbers are those of the summary.
The server (prometheus-client's own, in a daemon thread) binds 127.0.0.1 unless told
otherwise and stops with the run.

    etl_events_total{pipeline="orders",store="s1",outcome="delivered"} 1234
    etl_http_requests_total{pipeline="orders",store="s1",status="429"} 3
    etl_eta_seconds{pipeline="orders",store="s1"} 4521.0
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from etl.errors import OptionError
from etl.eta import pending_events

if TYPE_CHECKING:
    from threading import Thread
    from wsgiref.simple_server import WSGIServer

    from etl.load.loader import LoadStats
    from etl.report import ProgressDisplay


class RunCollector:
    """The metrics of one run, computed from its live counters on every scrape."""

    def __init__(
        self, display: ProgressDisplay, stats: LoadStats | None, started_at: float
    ) -> None:
        self.display = display
        self.stats = stats
        self.started_at = started_at  # Unix time

    def collect(self) -> Iterator[Metric]:
        report = self.display.report
        names, values = ["pipeline", "store"], [report.pipeline, report.store or ""]

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        events = CounterMetricFamily("etl_events", "Events by outcome.", labels=[*names, "outcome"])
        for outcome, count in (
            ("delivered", report.delivered),
            ("rejected", report.rejected),
            ("failed", report.failed),
            ("skipped_unchanged", report.skipped_unchanged),
            ("written", report.written),
        ):
            events.add_metric([*values, outcome], count)
        yield events
        if report.stores:  # many stores (SPEC §10): each store's outcomes, apart from the sum
            by_store = CounterMetricFamily(
                "etl_store_events",
                "Events by store and outcome.",
                labels=["pipeline", "store", "outcome"],
            )
            for store, figures in list(report.stores.items()):
                for outcome in ("delivered", "rejected", "failed"):
                    by_store.add_metric([report.pipeline, store, outcome], figures.get(outcome, 0))
            yield by_store
        rules = CounterMetricFamily(
            "etl_rejected_rows", "Rejected rows by rule.", labels=[*names, "rule"]
        )
        for rule, count in dict(report.rejected_by_rule).items():
            rules.add_metric([*values, rule], count)
        yield rules
        yield counter("etl_rows_read", "Source rows read.", report.extracted)
        yield gauge(
            "etl_queue_depth", "Events read and waiting for a sender.", pending_events(report)
        )
        eta = self.display.eta()
        yield gauge(
            "etl_eta_seconds",
            "Seconds left at the achieved rate (NaN: no rate yet).",
            math.nan if eta.seconds is None else eta.seconds,
        )
        total = self.display.total_rows()
        yield gauge(
            "etl_source_rows",
            "Rows in the whole source (NaN: not known).",
            math.nan if total is None else total,
        )
        yield gauge(
            "etl_run_start_time_seconds", "When the run started (Unix time).", self.started_at
        )
        yield from self._http(names, values)

    def _http(self, names: list[str], values: list[str]) -> Iterator[Metric]:
        stats = self.stats
        if stats is None:  # a dry run sends nothing
            return
        requests = CounterMetricFamily(
            "etl_http_requests",
            "Requests by HTTP status (or timeout, connection).",
            labels=[*names, "status"],
        )
        for status, count in dict(stats.status_counts).items():
            requests.add_metric([*values, str(status)], count)
        yield requests
        for name, doc, value in (
            ("etl_http_429", "Answers that said the rate limit was exceeded.", stats.http_429),
            ("etl_http_retries", "Requests that retried an event.", stats.retries),
            (
                "etl_limiter_wait_seconds",
                "Seconds the limiter held requests back.",
                stats.limiter_wait_s,
            ),
            ("etl_pause_429_seconds", "Seconds sending was paused by 429s.", stats.pause_429_s),
        ):
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            yield family


class MetricsServer:
    """`/metrics` over HTTP for as long as the run lasts; a context manager."""

    def __init__(self, collector: RunCollector, port: int, host: str = "127.0.0.1") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(collector)
        self.port, self.host = port, host
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None

    def __enter__(self) -> MetricsServer:
        try:
            self._server, self._thread = start_http_server(self.port, self.host, self.registry)
        except OSError as exc:
            raise OptionError(
                f"--metrics-port {self.port}: cannot listen on {self.host}: {exc.strerror or exc}"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
