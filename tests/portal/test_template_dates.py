"""Every moment a page shows goes through `|when` (portal/templatetags/dates.py): one
format, the zone always named, localised by portal.js."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.template import Context, Template

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def test_no_template_formats_a_date_by_hand():
    offenders = [
        str(path.relative_to(TEMPLATES))
        for path in TEMPLATES.rglob("*.html")
        if "|date:" in path.read_text()
    ]
    assert offenders == []


def test_when_reads_an_iso_string_as_the_same_moment():
    moment = datetime(2026, 11, 30, 14, 5, 9, tzinfo=UTC)
    template = Template("{% load dates %}{{ a|when }}|{{ b|when }}|{{ c|when }}")
    html = template.render(Context({"a": moment, "b": moment.isoformat(), "c": "soon"}))
    first, second, third = html.split("|")
    assert first == second
    assert third == ""
