"""CSV exports that spreadsheets open safely."""

from __future__ import annotations


def formula_safe(value: str) -> str:
    """User text (token names, model slugs) with a leading =, +, - or @ would run as a
    spreadsheet formula: a quote keeps it text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
