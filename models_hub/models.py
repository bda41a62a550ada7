"""The catalog: model listings (the operator's and the marketplace's) and their tags."""

from __future__ import annotations

import copy
import secrets
from datetime import datetime
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.exceptions import ValidationError as SchemaViolation

from inference.spec import ModelSpec, SourceError, parse_source
from models_hub.markdown import render_markdown
from portal.models import Organization

OPERATOR_NAME = "Model Portal"
# A worker gets this much longer than the soft limit to clean up before it is killed.
HARD_TIME_LIMIT_GRACE_SECONDS = 30


class Task(models.TextChoices):
    """A task is served by the runner registered for it in `inference.runners`."""

    TEXT_GENERATION = "text-generation", "Text generation"
    EMBEDDINGS = "embeddings", "Embeddings"
    TEXT_CLASSIFICATION = "text-classification", "Text classification"
    OCR = "ocr", "OCR"
    OBJECT_DETECTION = "object-detection", "Object detection"


class ListingStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PENDING_REVIEW = "pending_review", "Pending review"
    PUBLISHED = "published", "Published"
    DEPRECATED = "deprecated", "Deprecated"


class Visibility(models.TextChoices):
    PUBLIC = "public", "Public"
    PRIVATE = "private", "Private to its organization"


class Dtype(models.TextChoices):
    AUTO = "auto", "Auto (bf16/fp16 on GPU, fp32 on CPU)"
    FLOAT32 = "float32", "float32"
    BFLOAT16 = "bfloat16", "bfloat16"
    FLOAT16 = "float16", "float16"


# Deprecated listings keep answering calls (existing clients keep working) but leave the
# catalog's list.
CALLABLE_STATUSES = (ListingStatus.PUBLISHED, ListingStatus.DEPRECATED)


class Tag(models.Model):
    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=60)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelListingQuerySet(models.QuerySet):
    def visible_to(self, org: Organization | None) -> ModelListingQuerySet:
        """Public listings, plus the org's private ones; nobody sees another org's."""
        if org is None:
            return self.filter(visibility=Visibility.PUBLIC)
        return self.filter(Q(visibility=Visibility.PUBLIC) | Q(org=org))

    def catalog(self, org: Organization | None) -> ModelListingQuerySet:
        """What the catalog lists: published and visible."""
        return self.visible_to(org).filter(status=ListingStatus.PUBLISHED)

    def callable_by(self, org: Organization | None) -> ModelListingQuerySet:
        return self.visible_to(org).filter(status__in=CALLABLE_STATUSES)

    def viewable_by(self, org: Organization | None) -> ModelListingQuerySet:
        """Model pages: callable listings, plus every listing of the org itself (drafts too)."""
        callable_ = self.callable_by(org)
        return callable_ if org is None else callable_ | self.filter(org=org)


class TimeLimits(NamedTuple):
    soft: int
    hard: int


class ModelListing(models.Model):
    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    # The publisher: an org of the marketplace, or the operator when empty.
    org = models.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="model_listings",
        verbose_name="publisher",
        help_text="Empty for the operator's own models.",
    )
    summary = models.CharField(max_length=300)
    description = models.TextField(blank=True, help_text="Markdown; rendered sanitized.")
    task = models.CharField(max_length=40, choices=Task.choices, db_index=True)

    source = models.CharField(
        max_length=500, help_text="hf:org/name@rev, path:/folder, pkg:package/path or builtin:echo"
    )
    revision = models.CharField(max_length=100, blank=True)
    dtype = models.CharField(max_length=10, choices=Dtype.choices, default=Dtype.AUTO)
    max_context = models.PositiveIntegerField(
        null=True, blank=True, help_text="Tokens; prompts that do not fit are refused."
    )
    default_params = models.JSONField(
        default=dict,
        blank=True,
        help_text='Used when the caller omits them, e.g. {"temperature": 0.7}.',
    )
    max_params = models.JSONField(
        default=dict,
        blank=True,
        help_text='Caps on what callers may ask, e.g. {"max_new_tokens": 1024}.',
    )
    options = models.JSONField(default=dict, blank=True, help_text="Runner-specific settings.")
    queue = models.CharField(
        max_length=64,
        default="cpu",
        help_text="Celery queue of the workers that run it: cpu, gpu, ...",
    )
    time_limit_seconds = models.PositiveIntegerField(default=300)

    tags = models.ManyToManyField(Tag, blank=True, related_name="listings")
    input_schema = models.JSONField(default=dict, help_text="JSON Schema of the input object.")
    example_input = models.JSONField(default=dict, blank=True)

    status = models.CharField(
        max_length=20, choices=ListingStatus.choices, default=ListingStatus.DRAFT, db_index=True
    )
    visibility = models.CharField(
        max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)
    # Bumped by every edit and every submission; staff approve one revision and only
    # that revision can be published, so content swapped after review never goes out.
    content_revision = models.PositiveIntegerField(default=1, editable=False)
    approved_revision = models.PositiveIntegerField(null=True, blank=True, editable=False)
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ModelListingQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(visibility=Visibility.PUBLIC) | Q(org__isnull=False),
                name="private_listing_has_org",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        try:
            source = parse_source(self.source)
        except SourceError as exc:
            errors["source"] = str(exc)
        else:
            if source.revision and self.revision and source.revision != self.revision:
                errors["revision"] = f"The source names revision {source.revision!r}."
            self.revision = self.revision or source.revision
        if self.visibility == Visibility.PRIVATE and self.org_id is None:
            errors["visibility"] = "A private listing belongs to a publishing organization."
        errors.update(self._schema_errors())
        if errors:
            raise ValidationError(errors)

    def _schema_errors(self) -> dict[str, str]:
        if not isinstance(self.input_schema, dict) or self.input_schema.get("type") != "object":
            return {"input_schema": 'The input schema must describe an object ("type": "object").'}
        try:
            Draft202012Validator.check_schema(self.input_schema)
        except SchemaError as exc:
            return {"input_schema": f"Not a valid JSON Schema: {exc.message}"}
        if self.example_input:
            try:
                Draft202012Validator(self.input_schema).validate(self.example_input)
            except SchemaViolation as exc:
                return {"example_input": f"Does not match the input schema: {exc.message}"}
        return {}

    @property
    def publisher_name(self) -> str:
        return self.org.name if self.org_id else OPERATOR_NAME

    @property
    def is_diagnostic(self) -> bool:
        """A builtin model with no weights (echo): for tests and benchmarks, not for work."""
        return self.source.startswith("builtin:")

    @property
    def is_private(self) -> bool:
        return self.visibility == Visibility.PRIVATE

    @property
    def description_html(self) -> str:
        return render_markdown(self.description)

    @property
    def runtime_spec(self) -> ModelSpec:
        return ModelSpec(
            source=self.source,
            task=self.task,
            revision=self.revision,
            dtype=self.dtype,
            max_context=self.max_context,
            default_params=dict(self.default_params),
            max_params=dict(self.max_params),
            options=dict(self.options),
        )

    def time_limits(self) -> TimeLimits:
        return TimeLimits(
            self.time_limit_seconds, self.time_limit_seconds + HARD_TIME_LIMIT_GRACE_SECONDS
        )


# What a version freezes: everything the runner, input validation, pricing of the worst
# case and dispatch read from a listing. Names and text stay the listing's (not a run).
SNAPSHOT_FIELDS = (
    "task",
    "source",
    "revision",
    "dtype",
    "max_context",
    "default_params",
    "max_params",
    "options",
    "queue",
    "time_limit_seconds",
    "input_schema",
)
VERSION_ID_BYTES = 6  # 12 lowercase hex characters


def new_version_id() -> str:
    return secrets.token_hex(VERSION_ID_BYTES)


class VersionStatus(models.TextChoices):
    CURRENT = "current"
    DEPRECATED = "deprecated"


class ModelVersion(models.Model):
    """One publish of a listing, frozen: pinned calls (`slug:<id>`) run exactly this, however
    the listing changes afterwards; unpinned calls run the newest version not yet retired."""

    id = models.CharField(
        primary_key=True, max_length=2 * VERSION_ID_BYTES, default=new_version_id, editable=False
    )
    listing = models.ForeignKey(ModelListing, on_delete=models.CASCADE, related_name="versions")
    # The listing's content_revision that was published.
    content_revision = models.PositiveIntegerField()
    task = models.CharField(max_length=40, choices=Task.choices)
    source = models.CharField(max_length=500)
    revision = models.CharField(max_length=100, blank=True)
    dtype = models.CharField(max_length=10, choices=Dtype.choices, default=Dtype.AUTO)
    max_context = models.PositiveIntegerField(null=True, blank=True)
    default_params = models.JSONField(default=dict, blank=True)
    max_params = models.JSONField(default=dict, blank=True)
    options = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=64, default="cpu")
    time_limit_seconds = models.PositiveIntegerField(default=300)
    input_schema = models.JSONField(default=dict)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    deprecated_at = models.DateTimeField(null=True, blank=True)
    # Pinned calls answer 410 from then on; unpinned calls moved on to a newer version.
    retires_at = models.DateTimeField(null=True, blank=True)
    deprecated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    deprecation_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-content_revision"]
        indexes = [models.Index(fields=["listing", "-created_at"], name="version_listing_newest")]

    def __str__(self) -> str:
        return f"{self.listing_id}:{self.id}"

    @property
    def status(self) -> str:
        return VersionStatus.DEPRECATED if self.deprecated_at else VersionStatus.CURRENT

    def is_retired(self, now: datetime | None = None) -> bool:
        return self.retires_at is not None and self.retires_at <= (now or timezone.now())

    def snapshot_differs(self, listing: ModelListing) -> bool:
        return any(getattr(self, name) != getattr(listing, name) for name in SNAPSHOT_FIELDS)

    def as_listing(self) -> ModelListing:
        """The listing as this version runs it: an unsaved copy carrying the snapshot, so
        validation, pricing and dispatch read what runs. Never save it."""
        frozen = copy.copy(self.listing)
        for name in SNAPSHOT_FIELDS:
            setattr(frozen, name, copy.deepcopy(getattr(self, name)))
        return frozen

    @property
    def runtime_spec(self) -> ModelSpec:
        return self.as_listing().runtime_spec


class DeprecationNotice(models.Model):
    """An org told that a version it called is deprecated (owners' e-mail, `model.deprecated`
    webhook): the unique key makes a retried or repeated deprecation tell each org once."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="notices")
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "org"], name="uniq_deprecation_notice")
        ]

    def __str__(self) -> str:
        return f"{self.version}: {self.org}"
