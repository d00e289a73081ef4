"""`etl report PIPELINE.yaml --html FILE`: one self-contained, offline HTML page (SPEC §12).

Charts are SVG drawn in Python by pygal and inlined in the page: no JavaScript, no CDN,
no font or image to fetch, so the file opens from a mail attachment on a plane. pygal
(pure Python, LGPL, maintained by Kozea since 2012) was chosen over a vendored JS
library because SVG text is in the DOM (a browser test reads the numbers back), the
page needs no script at all, and a chart of 720 hourly bars weighs tens of kilobytes,
where plotly's bundle alone is 3.5 MB. The numbers are also in plain tables beside
each chart, for those who read rather than look.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pygal
from pygal.style import CleanStyle

from etl.history import History
from etl.watch import format_duration, running_line

_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)
_OUTCOMES = ("delivered", "rejected", "failed")
_COLOURS = ("#2e7d32", "#f9a825", "#c62828", "#1565c0", "#6a1b9a")
_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1180px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6em 0; font-size: 13px; }
td, th { padding: 3px 8px; text-align: right; } th { background: #f3f3f3; }
td { white-space: nowrap; } td.prose { white-space: normal; text-align: left; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; } .muted { color: #777; }
.tiles { display: flex; gap: 1em; flex-wrap: wrap; }
.tile { background: #f5f7fa; padding: .7em 1.2em; border-radius: 6px; }
.tile b { display: block; font-size: 1.5em; }
.running { background: #e3f2fd; padding: .8em 1.2em; border-left: 4px solid #1565c0; }
figure { margin: 0; } svg { max-width: 100%; }
"""


def _chart(
    kind: type[pygal.graph.graph.Graph],
    title: str,
    colours: tuple[str, ...] = _COLOURS,
    **options: Any,
) -> Any:
    style = CleanStyle(colors=colours, background="white", plot_background="white")
    settings: dict[str, Any] = {
        "js": [],  # pygal's tooltips script comes from a CDN: none, the page stays offline
        "disable_xml_declaration": True,
        "width": 1000,
        "height": 320,
        "legend_at_bottom": True,
        "truncate_label": -1,
    }
    return kind(title=title, style=style, **{**settings, **options})


def _svg(chart: Any, name: str) -> str:
    # pygal always inlines its config for the tooltips script; without that script it is
    # dead weight (a kilobyte a chart), and a page with no <script> is plainly offline.
    svg = _SCRIPT.sub("", chart.render(is_unicode=True))
    return f'<figure id="{name}" class="chart">{svg}</figure>'


def throughput_chart(history: History) -> str:
    """Events per hour by outcome (the hour of each event's latest outcome)."""
    chart = _chart(
        pygal.StackedBar,
        f"Events per {history.bucket} (by latest outcome)",
        x_label_rotation=30,
        show_minor_x_labels=False,
    )
    hours = [hour for hour, _ in history.hourly]
    chart.x_labels = hours
    chart.x_labels_major = hours[:: max(len(hours) // 12, 1)]
    for status in _OUTCOMES:
        chart.add(status, [counts.get(status, 0) for _, counts in history.hourly])
    return _svg(chart, "throughput")


def outcomes_chart(history: History) -> str:
    """Delivered / rejected / failed per run."""
    chart = _chart(pygal.StackedBar, "Outcomes per run")
    chart.x_labels = [f"run {run.id}" for run in history.runs]
    for key in _OUTCOMES:
        chart.add(key, [run.count(key) for run in history.runs])
    return _svg(chart, "outcomes")


def waits_chart(history: History) -> str:
    """Where each run's time went: waiting on the limiter, paused by 429s."""
    chart = _chart(pygal.Bar, "Seconds waited per run", colours=("#1565c0", "#c62828", "#9e9e9e"))
    chart.x_labels = [f"run {run.id}" for run in history.runs]
    for label, key in (
        ("limiter wait (s, summed over workers)", "limiter_wait_s"),
        ("paused by 429 (s)", "pause_429_s"),
        ("run duration (s)", "duration_s"),
    ):
        chart.add(label, [round(run.count(key), 1) for run in history.runs])
    return _svg(chart, "waits")


def rejects_chart(history: History) -> str:
    """Rejected rows by rule, all runs shown."""
    chart = _chart(
        pygal.HorizontalBar,
        "Rejected rows by rule",
        colours=("#f9a825",),
        height=max(180, 90 + 40 * len(history.rejects_by_rule)),
        show_legend=False,
    )
    ranked = history.rejects_by_rule.most_common()
    chart.x_labels = [rule for rule, _ in ranked]
    chart.add("rows", [count for _, count in ranked])
    return _svg(chart, "rejects")


def stores_chart(history: History) -> str:
    """One line per store, when the runs went to several."""
    chart = _chart(
        pygal.HorizontalStackedBar, "Per store", height=max(160, 60 + 30 * len(history.per_store))
    )
    stores = sorted(history.per_store)
    chart.x_labels = stores
    for key in _OUTCOMES:
        chart.add(key, [history.per_store[store][key] for store in stores])
    return _svg(chart, "stores")


def _table(header: list[str], rows: list[list[Any]], name: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_td(value) for value in row) + "</tr>" for row in rows)
    return f'<table id="{name}"><tr>{head}</tr>{body}</table>'


def _td(value: Any) -> str:
    """Numbers and times right-aligned on one line; prose left-aligned and wrapped."""
    prose = isinstance(value, str) and " " in value
    return (
        f'<td class="prose">{html.escape(value)}</td>'
        if prose
        else f"<td>{html.escape(_cell(value))}</td>"
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return "" if value is None else str(value)


def _runs_table(history: History) -> str:
    rows = []
    for run in reversed(history.runs):
        s = run.summary
        state = s.get("outcome") if run.ended_at else ("running" if s.get("running") else "killed?")
        rows.append(
            [
                run.id,
                run.started_at,
                run.ended_at,
                state,
                run.exit_code,
                s.get("extracted"),
                s.get("delivered"),
                s.get("rejected"),
                s.get("failed"),
                s.get("skipped_unchanged"),
                s.get("http_429"),
                s.get("limiter_wait_s"),
                s.get("pause_429_s"),
                s.get("duration_s"),
                s.get("requests_per_s"),
            ]
        )
    header = [
        "run",
        "started (UTC)",
        "ended (UTC)",
        "outcome",
        "exit",
        "read",
        "delivered",
        "rejected",
        "failed",
        "unchanged",
        "429s",
        "limiter wait s",
        "429 pause s",
        "duration s",
        "req/s",
    ]
    return _table(header, rows, "runs")


def _tiles(history: History) -> str:
    totals = history.totals
    waited = sum(run.count("limiter_wait_s") for run in history.runs)
    paused = sum(run.count("pause_429_s") for run in history.runs)
    tiles = [
        ("delivered", f"{totals.get('delivered', 0):,}"),
        ("rejected by the API", f"{totals.get('rejected', 0):,}"),
        ("failed (resent next run)", f"{totals.get('failed', 0):,}"),
        ("rows rejected (summed over runs)", f"{sum(history.rejects_by_rule.values()):,}"),
    ]
    tiles += [
        ("waited on the limiter", format_duration(waited)),
        ("paused by 429s", format_duration(paused)),
    ]
    return (
        '<div class="tiles" id="totals">'
        + "".join(
            f'<div class="tile" data-name="{html.escape(name)}">'
            f"<b>{html.escape(value)}</b>{html.escape(name)}</div>"
            for name, value in tiles
        )
        + "</div>"
    )


def _running(history: History) -> str:
    run = history.running
    if run is None:
        return ""
    line = running_line(run.summary) or ""
    return f'<p class="running" id="eta">{html.escape(line)}</p>'


def _rejects(history: History) -> str:
    if not history.rejects_by_rule:
        return "<h2>Rejects</h2><p>No row was rejected.</p>"
    rows = [
        [rule, count, " | ".join(history.examples.get(rule, []))]
        for rule, count in history.rejects_by_rule.most_common()
    ]
    note = (
        '<p class="muted">Summed over the runs shown: a rerun that reads a bad row again '
        "counts it again. The rows and their reasons are in the quarantine files.</p>"
    )
    return (
        "<h2>Rejects by rule</h2>"
        + note
        + rejects_chart(history)
        + _table(["rule", "rows", "examples (masked)"], rows, "rejects-table")
    )


def _stores(history: History) -> str:
    if len(history.per_store) < 2:
        return ""
    rows = [
        [store, *(sums[key] for key in (*_OUTCOMES, "requests", "http_429"))]
        for store, sums in sorted(history.per_store.items())
    ]
    return (
        "<h2>Per store</h2>"
        + stores_chart(history)
        + _table(["store", *_OUTCOMES, "requests", "429s"], rows, "stores-table")
    )


def render(history: History, now: datetime | None = None) -> str:
    """The whole page as one string."""
    made = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    title = f"{history.pipeline}: backfill report"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">from the state store, {made}; {len(history.runs)} runs shown</p>',
        _running(history),
        _tiles(history),
        "<h2>Throughput</h2>",
        throughput_chart(history) if history.hourly else "<p>No event recorded yet.</p>",
        "<h2>Runs</h2>",
        outcomes_chart(history) if history.runs else "",
        waits_chart(history) if history.runs else "",
        _runs_table(history),
        _rejects(history),
        _stores(history),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part)


def write_report(history: History, path: Path) -> int:
    """Write the page; return its size in bytes."""
    text = render(history)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return len(text.encode())
