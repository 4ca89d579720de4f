"""Charts as inline SVG, drawn on the server: no script, no library, no CDN (the daemon may have no internet).

Rule 1: every text that reaches the SVG (a day, a rule's name, a count) is escaped.
Rule 2: each chart says in words what it draws (<title>, and a table beside it on the page), so it reads without
the picture too.
"""

from __future__ import annotations

from html import escape

#: Colours of the outcomes: sent, held, refused (distinct for the common kinds of colour blindness).
COLOURS = {"sent": "#1b7837", "held": "#e08214", "refused": "#b2182b"}


def stacked_days(days: list[dict], keys: tuple[str, ...] = ("sent", "held", "refused"), *, width: int = 640,
                 height: int = 220, title: str = "Messages per day by outcome") -> str:
    """Stacked bars, one per day, of `keys` (sent, held, refused)."""
    left, bottom, top, right = 44, 28, 12, 8
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([sum(d[k] for k in keys) for d in days] + [1])
    scale = _nice(peak)
    n = max(len(days), 1)
    slot = plot_w / n
    bar = max(slot * 0.7, 1.0)
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
           f'data-chart="days" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for i in range(5):
        value = scale * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{_count(value)}</text>')
    for i, d in enumerate(days):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        for k in keys:
            h = plot_h * d[k] / scale
            if h > 0:
                y -= h
                out.append(f'<rect class="bar-{k}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                           f'fill="{COLOURS.get(k, "#555")}"><title>{escape(d["day"])}: {d[k]} {escape(k)}'
                           f'</title></rect>')
        if n <= 14 or i % max(n // 7, 1) == 0:
            out.append(f'<text x="{x + bar / 2:.1f}" y="{height - 10}" font-size="10" text-anchor="middle">'
                       f'{escape(d["day"][5:])}</text>')
    legend_x = left
    for k in keys:
        out.append(f'<rect x="{legend_x}" y="{height - 8}" width="8" height="8" fill="{COLOURS.get(k, "#555")}"/>'
                   f'<text x="{legend_x + 11}" y="{height - 0.5}" font-size="9">{escape(k)}</text>')
        legend_x += 60
    out.append("</svg>")
    return "".join(out)


def bars(values: dict[str, int], *, width: int = 640, title: str = "Refusals by rule") -> str:
    """Horizontal bars, one per key (rule), largest first."""
    items = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    row, label_w = 22, 120
    height = max(row * len(items), row) + 8
    peak = max([v for _, v in items] + [1])
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
           f'data-chart="rules" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    if not items:
        out.append('<text x="4" y="16" font-size="12">none</text>')
    for i, (key, value) in enumerate(items):
        y = 4 + i * row
        w = (width - label_w - 60) * value / peak
        out.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="12" text-anchor="end">{escape(key)}</text>'
                   f'<rect class="bar-rule" x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 8}" '
                   f'fill="{COLOURS["refused"]}"><title>{escape(key)}: {value}</title></rect>'
                   f'<text x="{label_w + w + 6:.1f}" y="{y + 14}" font-size="12">{value}</text>')
    out.append("</svg>")
    return "".join(out)


def _nice(peak: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten, at or above `peak`."""
    step = 1.0
    while step * 10 <= peak:
        step *= 10
    for m in (1, 2, 5, 10):
        if m * step >= peak:
            return m * step
    return 10 * step  # pragma: no cover


def _count(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
