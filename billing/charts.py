"""Server-drawn SVG bar charts for the usage page: no JavaScript, no chart library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 720, 180
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 56, 24, 12
LABEL_WIDTH, BAR_HEIGHT, BAR_GAP = 200, 18, 8


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.4f}"


def column_chart(title: str, bars: Sequence[Bar]) -> SafeString:
    """Vertical bars over time (one per day); every bar has a tooltip with its value."""
    peak = max((bar.value for bar in bars), default=0) or 1
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(len(bars), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text x="0" y="{PAD_TOP + 4}" class="axis">{escape(_fmt(peak))}</text>',
        f'<text x="0" y="{HEIGHT - PAD_BOTTOM}" class="axis">0</text>',
        f'<line x1="{PAD_LEFT}" y1="{HEIGHT - PAD_BOTTOM}" x2="{WIDTH}" '
        f'y2="{HEIGHT - PAD_BOTTOM}" class="baseline"/>',
    ]
    for i, bar in enumerate(bars):
        h = plot_h * bar.value / peak
        x = PAD_LEFT + i * step + step * 0.1
        y = HEIGHT - PAD_BOTTOM - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{h:.1f}">'
            f"<title>{escape(bar.label)}: {escape(bar.text)}</title></rect>"
        )
    if bars:
        parts.append(
            f'<text x="{PAD_LEFT}" y="{HEIGHT - 6}" class="axis">{escape(bars[0].label)}</text>'
            f'<text x="{WIDTH}" y="{HEIGHT - 6}" class="axis" text-anchor="end">'
            f"{escape(bars[-1].label)}</text>"
        )
    parts.append("</svg>")
    # Every interpolated label and value above is escaped.
    return mark_safe("".join(parts))  # noqa: S308


def bar_chart(title: str, bars: Sequence[Bar]) -> SafeString:
    """Horizontal bars, one per category (model), labelled with their value."""
    peak = max((bar.value for bar in bars), default=0) or 1
    height = max(len(bars), 1) * (BAR_HEIGHT + BAR_GAP) + BAR_GAP
    plot_w = WIDTH - LABEL_WIDTH - 90
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, bar in enumerate(bars):
        y = BAR_GAP + i * (BAR_HEIGHT + BAR_GAP)
        w = plot_w * bar.value / peak
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 13}" text-anchor="end" class="axis">'
            f"{escape(bar.label[:32])}</text>"
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{w:.1f}" height="{BAR_HEIGHT}">'
            f"<title>{escape(bar.label)}: {escape(bar.text)}</title></rect>"
            f'<text x="{LABEL_WIDTH + w + 6:.1f}" y="{y + 13}" class="axis">'
            f"{escape(bar.text)}</text>"
        )
    parts.append("</svg>")
    # Every interpolated label and value above is escaped.
    return mark_safe("".join(parts))  # noqa: S308
