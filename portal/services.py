"""Every write that matters to tenancy goes through here: atomic, audited, role-checked."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urljoin

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import BadHeaderError, send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from portal import hot, hotcache
from portal.errors import Conflict, InvalidInput, NotAllowed, NotFound, Unavailable
from portal.models import (
    MIN_PREDICTION_RETENTION,
    TOKEN_ROLE,
    ApiToken,
    AuditLog,
    Invitation,
    Membership,
    Organization,
    Role,
    TokenScope,
    new_webhook_secret,
)
from portal.tokens import generate_token
from portal.validators import validate_single_line

User = get_user_model()
logger = logging.getLogger(__name__)
INVITATION_SALT = "portal.invitation"
MAX_TOKEN_NAME = 100


def audit(
    org: Organization, actor: AbstractBaseUser | None, action: str, target: str = "", **data
) -> None:
    AuditLog.objects.create(org=org, actor=actor, action=action, target=target[:200], data=data)


# --- Organizations -------------------------------------------------------------------


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


MAX_ORG_NAME = 120


def clean_org_name(name: str) -> str:
    """The name as stored: trimmed, not empty, one line, at most MAX_ORG_NAME characters."""
    name = name.strip()
    if not name:
        raise InvalidInput("An organization needs a name.", param="name")
    if len(name) > MAX_ORG_NAME:
        raise InvalidInput(
            f"Organization names are at most {MAX_ORG_NAME} characters.", param="name"
        )
    try:
        validate_single_line(name)
    except ValidationError as exc:
        raise InvalidInput(
            "Organization names are a single line, without control characters.", param="name"
        ) from exc
    return name


@transaction.atomic
def create_org(name: str, owner: AbstractBaseUser, *, personal: bool = False) -> Organization:
    name = clean_org_name(name)
    for attempt in range(5):
        try:
            with transaction.atomic():
                org = Organization.objects.create(
                    name=name,
                    slug=_unique_slug(name),
                    is_personal=personal,
                    free_allowance=personal,
                )
            break
        except IntegrityError:
            # Another request took the same slug between our check and insert.
            if attempt == 4:
                raise
    Membership.objects.create(org=org, user=owner, role=Role.OWNER)
    audit(org, owner, "org.created", org.slug, personal=personal)
    return org


def create_personal_org(user: AbstractBaseUser) -> Organization:
    label = user.get_username().split("@")[0] or "personal"
    return create_org(f"{label}'s workspace", user, personal=True)


def require_role(org: Organization, user: AbstractBaseUser, minimum: str) -> Membership:
    """The user's membership if it has at least `minimum`; an outsider sees a 404."""
    membership = Membership.objects.filter(org=org, user=user).first()
    if membership is None:
        raise NotFound("Organization not found.")
    if not membership.has_role(minimum):
        raise NotAllowed(f"This needs the {minimum} role in {org.name}.")
    return membership


def _lock_org(org: Organization) -> None:
    """Serializes membership changes of one org: two owners leaving at once cannot both
    succeed, and locking the org row first (never member rows first) avoids deadlocks."""
    Organization.objects.select_for_update().filter(pk=org.pk).first()


def _ensure_owner_remains(org: Organization, losing: Membership) -> None:
    """Call with the org locked (`_lock_org`)."""
    owners = Membership.objects.filter(org=org, role=Role.OWNER).count()
    if losing.role == Role.OWNER and owners <= 1:
        raise Conflict("An organization must keep at least one owner.", code="last_owner")


@transaction.atomic
def rename_org(org: Organization, actor: AbstractBaseUser, name: str) -> Organization:
    """Owners and admins rename a workspace (personal ones too); the slug stays, so links,
    tokens and API clients that name the org keep working."""
    require_role(org, actor, Role.ADMIN)
    name = clean_org_name(name)
    old = org.name
    # A single-column UPDATE: a concurrent retention change or secret rotation is kept.
    hotcache.update(Organization.objects.filter(pk=org.pk), hot.TOKENS_SCOPE, name=name)
    org.name = name
    audit(org, actor, "org.renamed", org.slug, old=old, new=name)
    return org


@transaction.atomic
def set_prediction_retention(
    org: Organization, actor: AbstractBaseUser, retention: timedelta
) -> None:
    require_role(org, actor, Role.ADMIN)
    if retention < MIN_PREDICTION_RETENTION:
        raise InvalidInput("Keep prediction data for at least one hour.", param="retention")
    old = org.prediction_retention
    # A single-column UPDATE: a concurrent rename or secret rotation is not overwritten.
    hotcache.update(
        Organization.objects.filter(pk=org.pk), hot.TOKENS_SCOPE, prediction_retention=retention
    )
    org.prediction_retention = retention
    audit(org, actor, "org.retention_changed", org.slug, old=str(old), new=str(retention))


@transaction.atomic
def rotate_webhook_secret(org: Organization, actor: AbstractBaseUser) -> str:
    """A new signing secret for the org's webhooks, in force for the next delivery; the old
    one stops verifying at once (receivers update their copy from the settings page)."""
    require_role(org, actor, Role.ADMIN)
    secret = new_webhook_secret()
    # A single-column UPDATE: a concurrent rename or retention change is not overwritten.
    hotcache.update(Organization.objects.filter(pk=org.pk), hot.TOKENS_SCOPE, webhook_secret=secret)
    org.webhook_secret = secret
    audit(org, actor, "org.webhook_secret_rotated", org.slug)  # never the secret itself
    return secret


@transaction.atomic
def change_role(
    org: Organization, actor: AbstractBaseUser, membership_id: int, role: str
) -> Membership:
    actor_membership = require_role(org, actor, Role.ADMIN)
    if role not in Role.values:
        raise InvalidInput("Unknown role.", param="role")
    _lock_org(org)
    membership = Membership.objects.filter(org=org, pk=membership_id).first()
    if membership is None:
        raise NotFound("Member not found.")
    # Only owners may create or demote owners.
    if Role.OWNER in (role, membership.role) and actor_membership.role != Role.OWNER:
        raise NotAllowed("Only an owner can grant or take away the owner role.")
    if membership.role == Role.OWNER and role != Role.OWNER:
        _ensure_owner_remains(org, membership)
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit(org, actor, "member.role_changed", membership.user.email, old=old, new=role)
    if not membership.has_role(TOKEN_ROLE):
        _revoke_tokens_of(org, membership.user, actor, reason="member.role_changed")
    return membership


@transaction.atomic
def remove_member(org: Organization, actor: AbstractBaseUser, membership_id: int) -> None:
    _lock_org(org)
    membership = Membership.objects.filter(org=org, pk=membership_id).first()
    if membership is None:
        raise NotFound("Member not found.")
    if membership.user_id != actor.pk:
        actor_membership = require_role(org, actor, Role.ADMIN)
        if membership.role == Role.OWNER and actor_membership.role != Role.OWNER:
            raise NotAllowed("Only an owner can remove an owner.")
    _ensure_owner_remains(org, membership)
    membership.delete()
    action = "member.left" if membership.user_id == actor.pk else "member.removed"
    audit(org, actor, action, membership.user.email)
    _revoke_tokens_of(org, membership.user, actor, reason=action)


def leave_org(org: Organization, user: AbstractBaseUser) -> None:
    membership = Membership.objects.filter(org=org, user=user).first()
    if membership is None:
        raise NotFound("Organization not found.")
    remove_member(org, user, membership.pk)


@transaction.atomic
def delete_org(org: Organization, actor: AbstractBaseUser) -> None:
    require_role(org, actor, Role.OWNER)
    if org.is_personal:
        raise Conflict("A personal workspace cannot be deleted.", code="personal_org")
    org.delete()


# --- Invitations ---------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    signed_key: str


def sign_invitation(invitation: Invitation) -> str:
    return signing.dumps({"i": invitation.pk, "n": invitation.nonce}, salt=INVITATION_SALT)


@transaction.atomic
def invite_member(
    org: Organization,
    actor: AbstractBaseUser,
    email: str,
    role: str = Role.MEMBER,
    *,
    base_url: str | None = None,
) -> IssuedInvitation:
    """Creates the invitation and e-mails its link (`base_url`: the site's, by default).

    The e-mail is sent inside the transaction: if it cannot be sent, no invitation exists
    (an invitation nobody received could only be found by guessing)."""
    require_role(org, actor, Role.ADMIN)
    email = User.objects.normalize_email(email.strip()).lower()
    if not email or "@" not in email or len(email) > 254:
        raise InvalidInput("Enter a valid e-mail address.", param="email")
    if role not in (Role.MEMBER, Role.ADMIN):
        raise InvalidInput("Invitations grant the member or admin role.", param="role")
    if Membership.objects.filter(org=org, user__email__iexact=email).exists():
        raise Conflict(f"{email} is already a member.", code="already_member")
    expires = timezone.now() + timedelta(seconds=settings.INVITATION_MAX_AGE_SECONDS)
    invitation = Invitation.objects.create(
        org=org, email=email, role=role, invited_by=actor, expires_at=expires
    )
    audit(org, actor, "invitation.created", email, role=role)
    issued = IssuedInvitation(invitation, sign_invitation(invitation))
    path = reverse("invitation_accept", args=[issued.signed_key])
    send_invitation_email(invitation, urljoin(base_url or settings.SITE_URL, path))
    return issued


def find_invitation(signed_key: str) -> Invitation:
    """The pending invitation behind a link; forged, expired, used and revoked links fail."""
    try:
        payload = signing.loads(
            signed_key, salt=INVITATION_SALT, max_age=settings.INVITATION_MAX_AGE_SECONDS
        )
    except signing.SignatureExpired as exc:
        raise InvalidInput("This invitation has expired.", code="invitation_expired") from exc
    except signing.BadSignature as exc:
        raise NotFound("This invitation link is not valid.", code="invitation_invalid") from exc
    invitation = (
        Invitation.objects.select_related("org")
        .filter(pk=payload.get("i"), nonce=payload.get("n"))
        .first()
    )
    if invitation is None:
        raise NotFound("This invitation link is not valid.", code="invitation_invalid")
    if invitation.accepted_at or invitation.revoked_at:
        raise Conflict("This invitation has already been used.", code="invitation_used")
    if invitation.expires_at <= timezone.now():
        raise InvalidInput("This invitation has expired.", code="invitation_expired")
    return invitation


def send_invitation_email(invitation: Invitation, link: str) -> None:
    """Raises Unavailable (the caller's transaction then rolls back) if it cannot be sent."""
    inviter = invitation.invited_by.email if invitation.invited_by else "An administrator"
    try:
        send_mail(
            subject=f"You are invited to {invitation.org.name} on Model Portal",
            message=(
                f"{inviter} invited you to join {invitation.org.name} as {invitation.role}.\n\n"
                f"Accept the invitation: {link}\n\n"
                f"The link works once and expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
            ),
            from_email=None,
            recipient_list=[invitation.email],
        )
    except (BadHeaderError, OSError) as exc:  # smtplib's errors are OSErrors
        logger.exception("Invitation e-mail for org %s not sent", invitation.org.slug, exc_info=exc)
        raise Unavailable(
            "The invitation e-mail could not be sent; no invitation was created.",
            code="email_failed",
        ) from exc


@transaction.atomic
def accept_invitation(signed_key: str, user: AbstractBaseUser) -> Membership:
    invitation = find_invitation(signed_key)
    if invitation.email.lower() != (user.email or "").lower():
        raise NotAllowed(
            f"This invitation was sent to {invitation.email}; log in with that address.",
            code="invitation_wrong_user",
        )
    now = timezone.now()
    # Single use: only one request can flip accepted_at from NULL.
    claimed = Invitation.objects.filter(
        pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).update(accepted_at=now, accepted_by=user)
    if claimed != 1:
        raise Conflict("This invitation has already been used.", code="invitation_used")
    membership, created = Membership.objects.get_or_create(
        org=invitation.org, user=user, defaults={"role": invitation.role}
    )
    if created:
        audit(invitation.org, user, "member.joined", user.email, role=invitation.role)
    return membership


@transaction.atomic
def revoke_invitation(org: Organization, actor: AbstractBaseUser, invitation_id: int) -> None:
    require_role(org, actor, Role.ADMIN)
    updated = Invitation.objects.filter(
        org=org, pk=invitation_id, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    if updated != 1:
        raise NotFound("Invitation not found.")
    audit(org, actor, "invitation.revoked", str(invitation_id))


# --- API tokens ----------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    plaintext: str


def _clean_scopes(scopes: list[str]) -> list[str]:
    cleaned = sorted({s.strip() for s in scopes if s.strip()})
    if not cleaned:
        raise InvalidInput("Choose at least one scope.", param="scopes")
    unknown = set(cleaned) - set(TokenScope.values)
    if unknown:
        raise InvalidInput(f"Unknown scope: {', '.join(sorted(unknown))}.", param="scopes")
    return cleaned


@transaction.atomic
def issue_token(
    org: Organization,
    actor: AbstractBaseUser | None,
    name: str,
    *,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    rate_limit_per_minute: int | None = None,
) -> IssuedToken:
    """Creates a token; the plaintext exists only in the return value."""
    if actor is not None:
        require_role(org, actor, TOKEN_ROLE)
    name = name.strip()
    if not name or len(name) > MAX_TOKEN_NAME:
        raise InvalidInput(
            f"A token needs a name of 1 to {MAX_TOKEN_NAME} characters.", param="name"
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry must be in the future.", param="expires_at")
    new = generate_token()
    token = ApiToken.objects.create(
        org=org,
        created_by=actor,
        name=name,
        prefix=new.prefix,
        digest=new.digest,
        scopes=_clean_scopes(scopes or [TokenScope.PREDICT, TokenScope.READ]),
        allowed_models=sorted(set(allowed_models or [])),
        rate_limit_per_minute=rate_limit_per_minute,
        expires_at=expires_at,
    )
    audit(org, actor, "token.created", f"{name} (mp_{new.prefix})", scopes=token.scopes)
    return IssuedToken(token, new.plaintext)


@transaction.atomic
def revoke_token(org: Organization, actor: AbstractBaseUser, token_id: int) -> None:
    require_role(org, actor, TOKEN_ROLE)
    token = ApiToken.objects.filter(org=org, pk=token_id).first()
    if token is None:
        raise NotFound("Token not found.")
    revoked = hotcache.update(
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True),
        hot.TOKENS_SCOPE,
        revoked_at=timezone.now(),
    )
    if revoked:
        audit(org, actor, "token.revoked", f"{token.name} (mp_{token.prefix})")


def _revoke_tokens_of(
    org: Organization, creator: AbstractBaseUser, actor: AbstractBaseUser, *, reason: str
) -> None:
    """Revokes the live tokens `creator` made in `org`, one audit row each. Call inside the
    transaction that took the creator's right away, so no request sees one without the other."""
    live = ApiToken.objects.select_for_update().filter(
        org=org, created_by=creator, revoked_at__isnull=True
    )
    tokens = list(live.only("pk", "name", "prefix"))
    if not tokens:
        return
    hotcache.update(
        ApiToken.objects.filter(pk__in=[t.pk for t in tokens]),
        hot.TOKENS_SCOPE,
        revoked_at=timezone.now(),
    )
    for token in tokens:
        audit(org, actor, "token.revoked", f"{token.name} (mp_{token.prefix})", reason=reason)
