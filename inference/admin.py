"""Predictions in Django admin, read-only: operators investigate a customer's call here
(what went in, what came out, the logs). Nothing is added, edited or deleted by hand: the
row, its usage and its billing are written by the services only."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import F
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from inference.models import Prediction

# An embedding's output runs to megabytes; the page shows this much and says what is left.
PREVIEW_CHARS = 10_000


def readable(value: Any) -> str:
    """Text as it is, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def preformatted(value: Any) -> SafeString:
    """Escaped (it is customer data), in a <pre>, cut at PREVIEW_CHARS."""
    text = readable(value)
    rest = len(text) - PREVIEW_CHARS
    if rest <= 0:
        return format_html("<pre>{}</pre>", text)
    return format_html(
        "<pre>{}</pre><p>… {} more characters</p>", text[:PREVIEW_CHARS], f"{rest:,}"
    )


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["id", "org", "model_slug", "status", "source", "created_at", "duration"]
    list_filter = ["status", "source"]
    # The id exactly (operators paste it from a customer's message), the rest by substring.
    search_fields = ["=id", "org__name", "org__slug", "model__slug"]
    list_select_related = ["org", "model"]
    # Counting every prediction for "N total" on each page load is a full scan.
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["id", "org", "model", "version", "source", "status", "token", "user"]}),
        (
            "Timing",
            {
                "fields": [
                    "created_at",
                    "started_at",
                    "completed_at",
                    "duration",
                    "queue_time",
                    "predict_time",
                ]
            },
        ),
        ("Data", {"fields": ["input_data", "output_data", "error_text", "logs_text"]}),
        (
            "Run",
            {
                "fields": [
                    "queue",
                    "attempt",
                    "worker_host",
                    "input_tokens",
                    "output_tokens",
                    "delivered_output_tokens",
                    "lease_expires_at",
                    "cancel_requested_at",
                    "webhook",
                    "webhook_events_filter",
                    "data_removed_at",
                ]
            },
        ),
    ]
    readonly_fields = ["duration", "input_data", "output_data", "error_text", "logs_text"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Prediction | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Prediction | None = None) -> bool:
        return False

    @admin.display(description="Model", ordering="model__slug")
    def model_slug(self, prediction: Prediction) -> str:
        """The slug: what the customer called it by, and what the search matches."""
        return prediction.model.slug

    @admin.display(description="Duration", ordering=F("completed_at") - F("created_at"))
    def duration(self, prediction: Prediction) -> str | None:
        """From creation to completion: what the caller waited, queue included."""
        if prediction.completed_at is None:
            return None
        return f"{(prediction.completed_at - prediction.created_at).total_seconds():.2f} s"

    def _data(self, prediction: Prediction, value: Any) -> SafeString | str | None:
        if prediction.data_removed_at is not None:
            return f"Erased by the org's retention period on {prediction.data_removed_at:%Y-%m-%d}."
        if value is None or value == "":
            return None  # admin shows its "-"
        return preformatted(value)

    @admin.display(description="Input")
    def input_data(self, prediction: Prediction) -> SafeString | str | None:
        return self._data(prediction, prediction.input)

    @admin.display(description="Output")
    def output_data(self, prediction: Prediction) -> SafeString | str | None:
        return self._data(prediction, prediction.output)

    @admin.display(description="Error")
    def error_text(self, prediction: Prediction) -> SafeString | None:
        return preformatted(prediction.error) if prediction.error else None

    @admin.display(description="Logs")
    def logs_text(self, prediction: Prediction) -> SafeString | str | None:
        return self._data(prediction, prediction.logs)
