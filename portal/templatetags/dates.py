"""The portal's one way to show a moment: `{{ value|when }}`.

A `<time>` element whose text is the moment in the server's zone with the zone's name
("2026-11-30 14:05 UTC") and whose `datetime` is the exact ISO 8601 instant; portal.js
rewrites the text in the browser's own zone, again with its name. Without JavaScript the
server's rendering stands, and it is never ambiguous because the zone is always shown.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

# Year first, 24-hour clock: sorts as text and reads the same in every locale.
FORMAT = "%Y-%m-%d %H:%M %Z"


def when_text(value: datetime) -> str:
    return timezone.localtime(value).strftime(FORMAT)


def _moment(value: datetime | str | None) -> datetime | None:
    """The moment `value` names: a datetime as is, or an ISO 8601 string (the billing
    summaries hand templates their periods as such strings); None for anything else."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


@register.filter
def when(value: datetime | str | None) -> SafeString | str:
    value = _moment(value)
    if value is None:
        return ""
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return format_html(
        '<time datetime="{}" data-local>{}</time>', value.isoformat(), when_text(value)
    )
