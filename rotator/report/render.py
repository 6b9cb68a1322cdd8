"""The report as one self-contained HTML file (inline CSS and SVG), as CSV and as JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from html import escape
from typing import Final

from rotator.domain.alerts import Severity
from rotator.report.data import SOON_DAYS, WEEKS, ReportData, report_json

MANAGED_COLOR: Final = "#2563eb"
UNMANAGED_COLOR: Final = "#f59e0b"

_CSS: Final = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 0; background: #f6f7f9; color: #1f2937; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; }
.meta { color: #6b7280; margin: 0 0 16px; }
.note { background: #fef3c7; border: 1px solid #f59e0b; padding: 8px 12px; border-radius: 6px;
        margin: 8px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 16px;
        min-width: 120px; }
.card b { display: block; font-size: 22px; }
.card.bad b { color: #b91c1c; }
.panel { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 12px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e5e7eb;
         vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.sev-critical { color: #b91c1c; font-weight: 600; }
.sev-warning { color: #b45309; font-weight: 600; }
.sev-info { color: #374151; }
.empty { color: #6b7280; font-style: italic; }
code { font-size: 12px; }
svg text { font: 11px system-ui, sans-serif; fill: #374151; }
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _date(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "never"


def chart_svg(data: ReportData) -> str:
    """Stacked weekly bars of expiries over the next 180 days: managed vs unmanaged."""
    width, height = 1040, 280
    left, right, top, bottom = 44, 16, 28, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((w.total for w in data.weeks), default=0)
    scale_max = max(peak, 1)
    step = plot_w / WEEKS
    bar_w = step * 0.7
    parts = [
        f'<svg id="expiry-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} '
        f'{height}" width="100%" role="img" aria-label="Credential expiries per week, '
        f'next 180 days">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa"/>',
    ]
    ticks = sorted({0, scale_max, (scale_max + 1) // 2})
    for t in ticks:
        y = top + plot_h - plot_h * t / scale_max
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                     'stroke="#e5e7eb"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{t}</text>')
    for i, w in enumerate(data.weeks):
        x = left + i * step + (step - bar_w) / 2
        base = float(top + plot_h)
        label = (f"week of {w.start.isoformat()}: {w.managed} managed, "
                 f"{w.unmanaged} unmanaged")
        for count, cls, color in ((w.managed, "managed", MANAGED_COLOR),
                                  (w.unmanaged, "unmanaged", UNMANAGED_COLOR)):
            if count == 0:
                continue
            h = plot_h * count / scale_max
            base -= h
            parts.append(
                f'<rect class="bar {cls}" data-week="{w.start.isoformat()}" data-count="{count}" '
                f'x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{color}"><title>{_e(label)}</title></rect>'
            )
        if i % 4 == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" '
                         f'text-anchor="middle">{w.start.strftime("%b %d")}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
                 f'y2="{top + plot_h}" stroke="#9ca3af"/>')
    ly = height - 12
    parts.append(f'<rect x="{left}" y="{ly - 9}" width="10" height="10" fill="{MANAGED_COLOR}"/>'
                 f'<text x="{left + 14}" y="{ly}">managed by rotator</text>')
    parts.append(f'<rect x="{left + 150}" y="{ly - 9}" width="10" height="10" '
                 f'fill="{UNMANAGED_COLOR}"/><text x="{left + 164}" y="{ly}">unmanaged</text>')
    parts.append(f'<text x="{left}" y="16">Credentials ending per week (next 180 days); '
                 f'peak {peak}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(table_id: str, headers: list[str], rows: list[list[str]], empty: str,
           numeric: frozenset[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    if not rows:
        body = f'<tr><td class="empty" colspan="{len(headers)}">{_e(empty)}</td></tr>'
    else:
        body = "".join(
            "<tr>" + "".join(
                f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
                for i, cell in enumerate(row)
            ) + "</tr>"
            for row in rows
        )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _sev(sev: Severity) -> str:
    return f'<span class="sev-{_e(sev)}">{_e(sev)}</span>'


def render_html(data: ReportData) -> str:
    scan = data.last_scan
    scan_text = (
        "no scan has run yet" if scan is None
        else f"last scan {scan.status}, started {_date(scan.started_at)} UTC"
    )
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in data.notes)
    cards = [
        ("credentials", data.total, False),
        ("managed", data.managed, False),
        ("unmanaged", data.total - data.managed, False),
        ("expired", data.expired, data.expired > 0),
        (f"ending within {SOON_DAYS} days", data.expiring_soon, data.expiring_soon > 0),
        ("findings", len(data.findings), len(data.findings) > 0),
    ]
    cards_html = "".join(
        f'<div class="card{" bad" if bad else ""}"><b>{n}</b>{_e(label)}</div>'
        for label, n, bad in cards
    )
    soon = _table(
        "expiring",
        ["App", "App ID", "Kind", "Key ID", "Ends (UTC)", "Days left", "Managed", "Source",
         "Owners"],
        [[_e(c.app_name), f"<code>{_e(c.app_id)}</code>", _e(c.kind),
          f"<code>{_e(c.key_id)}</code>", _e(_date(c.end)),
          _e(f"{c.days_left:.1f}" if c.days_left is not None else ""),
          "yes" if c.managed else "no", _e(c.source), _e(_owners(c.owners))]
         for c in data.soon],
        f"Nothing expired or ending within {SOON_DAYS} days.",
        numeric=frozenset({5}),
    )
    findings = _table(
        "findings",
        ["Severity", "Finding", "App", "Key ID", "What"],
        [[_sev(f.severity), _e(f.kind), _e(f.app_name), f"<code>{_e(f.key_id or '')}</code>",
          _e(f.message)] for f in data.findings],
        "No findings.",
    )
    rotations = _table(
        "rotations",
        ["Rotation", "App ID", "State", "Reason", "Started (UTC)", "Updated (UTC)", "Attempts",
         "Last error"],
        [[f"<code>{_e(r.id[:12])}</code>", f"<code>{_e(r.app_id)}</code>", _e(r.state),
          _e(r.reason), _e(_date(r.created_at)), _e(_date(r.updated_at)), _e(r.attempts),
          _e((r.last_error or "")[:200])] for r in data.rotations],
        "No rotations yet.",
        numeric=frozenset({6}),
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rotator report {_e(data.generated_at.astimezone(UTC).strftime("%Y-%m-%d"))}</title>
<style>{_CSS}</style></head>
<body><main>
<h1>Credential expiry report</h1>
<p class="meta">Generated {_e(_date(data.generated_at))} UTC · {_e(scan_text)}</p>
{notes}
<div class="cards">{cards_html}</div>
<h2>Expiries over the next 180 days, by week</h2>
<div class="panel">{chart_svg(data)}</div>
<h2>Expired or ending within {SOON_DAYS} days</h2>
{soon}
<h2>Findings</h2>
{findings}
<h2>Recent rotations</h2>
{rotations}
</main></body></html>
"""


CSV_HEADERS: Final = ["app_id", "app_name", "key_id", "kind", "end_date_time", "days_left",
                      "managed", "findings", "source", "owners"]


def _owners(owners: tuple[str, ...] | None) -> str:
    if owners is None:
        return "unknown"
    return ", ".join(owners) if owners else "nobody"


def render_csv(data: ReportData) -> str:
    """One line per credential (the findings column lists its finding kinds)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADERS)
    for c in data.credentials:
        writer.writerow([
            c.app_id, _csv_safe(c.app_name), c.key_id, c.kind,
            c.end.astimezone(UTC).isoformat().replace("+00:00", "Z") if c.end else "",
            "" if c.days_left is None else f"{c.days_left:.1f}",
            "true" if c.managed else "false", ";".join(c.findings), c.source,
            _csv_safe(";".join(c.owners or ())),
        ])
    return out.getvalue()


def _csv_safe(text: str) -> str:
    # Spreadsheets run cells that start with these as formulas (CSV injection).
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_json(data: ReportData) -> str:
    return json.dumps(report_json(data), indent=2) + "\n"
