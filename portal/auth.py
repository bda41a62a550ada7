"""One resolver for who is calling: the DRF auth classes and the Channels middleware use it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser

from portal.errors import AuthenticationFailed
from portal.models import ROLE_RANK, ApiToken, Membership, Organization, Role, TokenScope
from portal.tokens import find_active_token

SESSION_ORG_KEY = "current_org_id"
ALL_SCOPES = frozenset(TokenScope.values)


@dataclass(frozen=True)
class Principal:
    """The caller of a request: always one org, a user and/or a token, and what it may do."""

    org: Organization
    user: AbstractBaseUser | None
    token: ApiToken | None
    scopes: frozenset[str]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def allows_model(self, slug: str) -> bool:
        return self.token is None or self.token.allows_model(slug)


def bearer_from_header(header: str | None) -> str | None:
    """The token in an `Authorization: Bearer ...` header; None if the header is another kind."""
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


def resolve_bearer(header: str | None) -> Principal | None:
    """None when no bearer token was sent; AuthenticationFailed when one was sent but is bad."""
    plaintext = bearer_from_header(header)
    if plaintext is None:
        return None
    token = find_active_token(plaintext)
    if token is None:
        raise AuthenticationFailed("Invalid, expired or revoked API token.")
    return Principal(
        org=token.org, user=token.created_by, token=token, scopes=frozenset(token.scopes)
    )


def current_membership(user: AbstractBaseUser, session_org_id: int | None) -> Membership | None:
    """The membership of the org the user switched to, else their personal (or first) one."""
    if not user.is_authenticated:
        return None
    memberships = Membership.objects.select_related("org").filter(user=user)
    if session_org_id is not None:
        chosen = memberships.filter(org_id=session_org_id).first()
        if chosen is not None:
            return chosen
    return memberships.order_by("-org__is_personal", "created_at").first()


def resolve_session(user: AbstractBaseUser, session_org_id: int | None) -> Principal | None:
    membership = current_membership(user, session_org_id)
    if membership is None:
        return None
    return Principal(org=membership.org, user=user, token=None, scopes=_session_scopes(membership))


# Revenue is for owners and admins (issue #13); tokens get the scope only from admins up,
# the least role that may issue a token.
PUBLISHER_ROLE = Role.ADMIN


def _session_scopes(membership: Membership) -> frozenset[str]:
    if ROLE_RANK[membership.role] >= ROLE_RANK[PUBLISHER_ROLE]:
        return ALL_SCOPES
    return ALL_SCOPES - {TokenScope.PUBLISHER}


PrincipalKey = tuple[str, int | None, int | None]


def principal_key(principal: Principal) -> PrincipalKey:
    """What makes two principals valid or invalid together: the token, or the user's
    membership of the org."""
    if principal.token is not None:
        return ("token", principal.token.pk, None)
    user = principal.user
    return ("member", user.pk if user is not None else None, principal.org.pk)


def invalid_principals(principals: Iterable[Principal]) -> set[PrincipalKey]:
    """The keys of those `principals` that `still_valid` would reject, in one query for
    all tokens (open streams of one process are re-checked together)."""
    unique = {principal_key(principal): principal for principal in principals}
    token_ids = {key[1] for key in unique if key[0] == "token"}
    active = set(ApiToken.objects.active().filter(pk__in=token_ids).values_list("pk", flat=True))
    invalid = {("token", pk, None) for pk in token_ids - active}
    for key, principal in unique.items():
        if key[0] == "member" and not still_valid(principal):
            invalid.add(key)
    return invalid


def still_valid(principal: Principal) -> bool:
    """Whether a principal resolved earlier would still be resolved now, for callers that
    outlive their request (open streams): the same rules as `resolve_bearer` (the token is
    active) and `resolve_session` (the user is a member of the org)."""
    if principal.token is not None:
        return ApiToken.objects.active().filter(pk=principal.token.pk).exists()
    user = principal.user
    if user is None or not user.is_authenticated:
        return False
    return Membership.objects.filter(user=user, user__is_active=True, org=principal.org).exists()
