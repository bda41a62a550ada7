"""The tenant (Organization) and what hangs off it: members, invitations, tokens, audit."""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from portal.validators import validate_single_line

DEFAULT_PREDICTION_RETENTION = timedelta(days=30)
MIN_PREDICTION_RETENTION = timedelta(hours=1)


def new_invitation_nonce() -> str:
    return secrets.token_hex(16)


# Standard Webhooks' form: the prefix, then standard base64 of the HMAC key's bytes.
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
WEBHOOK_SECRET_BYTES = 32


def new_webhook_secret() -> str:
    key = secrets.token_bytes(WEBHOOK_SECRET_BYTES)
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(key).decode()


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


# What each role may do; checked server-side by `portal.permissions`.
ROLE_RANK = {Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}
# The least role that may create API tokens. A token acts with its creator's authority,
# so it stops working when the creator drops below this role or leaves the org.
TOKEN_ROLE = Role.ADMIN
TOKEN_ROLES = tuple(role for role, rank in ROLE_RANK.items() if rank >= ROLE_RANK[TOKEN_ROLE])


class Organization(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120, validators=[validate_single_line])
    is_personal = models.BooleanField(default=False)
    # Whether the default (free) plan's allowance applies without a subscription. It comes
    # with a person's personal workspace; team workspaces start when they subscribe, so
    # creating orgs cannot multiply one person's free allowance.
    free_allowance = models.BooleanField(
        default=False,
        help_text="Uses the free plan's allowance without a subscription (personal workspaces).",
    )
    # Signs the customer's outgoing webhooks (API.md, "Outgoing webhooks").
    webhook_secret = models.CharField(max_length=80, default=new_webhook_secret)
    # How long prediction inputs and outputs are kept once a prediction ends; the usage
    # ledger is kept regardless (inference/retention.py).
    prediction_retention = models.DurationField(
        default=DEFAULT_PREDICTION_RETENTION,
        validators=[MinValueValidator(MIN_PREDICTION_RETENTION)],
        help_text="Prediction inputs and outputs are erased this long after they finish.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "user"], name="uniq_membership_org_user")
        ]
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.user} in {self.org} ({self.role})"

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(minimum)]


class Invitation(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    # Random per invitation so a signed link can never be re-derived or re-used for
    # another invitation to the same address.
    nonce = models.CharField(max_length=32, default=new_invitation_nonce, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} -> {self.org}"

    @property
    def is_pending(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )


class TokenScope(models.TextChoices):
    PREDICT = "predict", "Run predictions"
    READ = "read", "Read predictions, models and usage"
    PUBLISHER = "publisher", "Read publisher earnings, ledger and stats"


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return (
            self.filter(revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .filter(Q(created_by__isnull=True) | Exists(_creator_may_hold_tokens()))
        )


def _creator_may_hold_tokens() -> models.QuerySet:
    """The token creator's membership, if it still allows tokens. The services revoke a
    member's tokens when they leave or are demoted; this also covers changes that bypass
    them (Django admin, the shell), and accounts an operator deactivated. Tokens issued
    by operators (no creator) are exempt."""
    return Membership.objects.filter(
        org=OuterRef("org"),
        user=OuterRef("created_by"),
        user__is_active=True,
        role__in=TOKEN_ROLES,
    )


class ApiToken(models.Model):
    """A bearer token `mp_<prefix>_<secret>`; only the prefix and an HMAC digest are kept."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tokens")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    # Model slugs this token may call; empty means every model the org may call.
    allowed_models = models.JSONField(default=list, blank=True)
    # Requests per minute; null means the plan's limit applies.
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (mp_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    def allows_model(self, slug: str) -> bool:
        return not self.allowed_models or slug in self.allowed_models


class AuditLog(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="audit_logs")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} {self.target}"


# Account events an org may subscribe its account webhook to (API.md, "Outgoing webhooks").
ACCOUNT_WEBHOOK_EVENTS = ("billing.threshold", "model.deprecated")
# inference.webhooks.MAX_URL_LENGTH: the URL is validated there (portal does not import it).
ACCOUNT_WEBHOOK_URL_LENGTH = 1000


def default_account_webhook_events() -> list[str]:
    return list(ACCOUNT_WEBHOOK_EVENTS)


class AccountWebhook(models.Model):
    """Where an org's account events go (`billing.threshold`, `model.deprecated`), signed
    with the org's webhook secret like prediction webhooks. One per org; an empty URL
    means none. Written only through `portal.account_webhooks.set_account_webhook`."""

    org = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="account_webhook"
    )
    url = models.CharField(max_length=ACCOUNT_WEBHOOK_URL_LENGTH, blank=True)
    events = models.JSONField(default=default_account_webhook_events)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.org}: {self.url or '(none)'}"

    def wants(self, event: str) -> bool:
        return bool(self.url) and event in self.events
