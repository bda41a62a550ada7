"""A prediction: one request to run one model, from admission to a terminal state."""

from __future__ import annotations

import secrets
import string

from django.conf import settings
from django.db import models

_ID_ALPHABET = string.ascii_lowercase + string.digits
PUBLIC_ID_LENGTH = 24
_ID_SPACE = len(_ID_ALPHABET) ** PUBLIC_ID_LENGTH


def new_prediction_id() -> str:
    """24 characters of [a-z0-9], uniformly: one draw from the whole space of ids, the
    same distribution as a draw per character with one read of the system's randomness
    instead of 24 (admission makes one per call)."""
    number = secrets.randbelow(_ID_SPACE)
    characters = []
    for _ in range(PUBLIC_ID_LENGTH):
        number, digit = divmod(number, len(_ID_ALPHABET))
        characters.append(_ID_ALPHABET[digit])
    return "".join(characters)


class Status(models.TextChoices):
    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)


class Source(models.TextChoices):
    API = "api"
    OPENAI = "openai"
    PLAYGROUND = "playground"


class Prediction(models.Model):
    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_prediction_id, editable=False
    )
    org = models.ForeignKey("portal.Organization", on_delete=models.CASCADE, related_name="+")
    token = models.ForeignKey(
        "portal.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.ForeignKey(
        "models_hub.ModelListing", on_delete=models.PROTECT, related_name="predictions"
    )
    # The version that ran (pinned by the caller, or the newest live one at admission);
    # empty for listings never published as a version, which run as they are.
    version = models.ForeignKey(
        "models_hub.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="predictions",
    )
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.API)
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.STARTING, db_index=True
    )
    input = models.JSONField(default=dict)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    logs = models.TextField(blank=True)

    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    # Billed = delivered: the output tokens whose events reached the log before a cancel
    # took effect or the run failed; empty for runs that stream nothing (all count).
    delivered_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    queue_time = models.FloatField(null=True, blank=True)
    predict_time = models.FloatField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # The reaper fails a prediction whose worker stopped renewing this lease.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    queue = models.CharField(max_length=64, default="cpu")
    attempt = models.PositiveSmallIntegerField(default=0)
    worker_host = models.CharField(max_length=200, blank=True)

    webhook = models.URLField(max_length=1000, blank=True)
    webhook_events_filter = models.JSONField(default=list, blank=True)
    # Set when the org's retention period erased input, output and logs (the row, its
    # metrics and the usage ledger stay).
    data_removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="pred_org_created"),
            models.Index(fields=["status", "lease_expires_at"], name="pred_status_lease"),
            # The retention sweep scans only rows whose data is still there.
            models.Index(
                fields=["completed_at"],
                name="pred_retention_due",
                condition=models.Q(data_removed_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class StoredFile(models.Model):
    """An image an org uploaded (API.md "Files") or sent inline in a prediction's input:
    validated and re-encoded by `inference.images`, its bytes in the "files" storage.

    It expires `FILE_TTL_SECONDS` after it was made, but stays while a prediction that
    used it keeps its input, and goes with it when retention erases that input
    (inference/files.py)."""

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_prediction_id, editable=False
    )
    org = models.ForeignKey("portal.Organization", on_delete=models.CASCADE, related_name="+")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    content_type = models.CharField(max_length=40)
    size = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    predictions = models.ManyToManyField(Prediction, related_name="files", blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["org", "-created_at"], name="file_org_created")]

    def __str__(self) -> str:
        return f"{self.id} ({self.content_type}, {self.size} bytes)"
