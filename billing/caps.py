"""Spend caps: per billing period, on what an org (or one of its API tokens) pays beyond
its plan. Owners set them; admission enforces them (`billing.metering`)."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from billing import credits
from billing.models import BillingAccount, TokenSpendCap
from billing.prices import parse_amount
from portal.errors import NotFound
from portal.models import ApiToken, Organization, Role
from portal.services import audit, require_role


def parse_cap(value: object) -> Decimal | None:
    """A cap from a form or the CLI: a decimal amount, or empty / "none" for no cap."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    return parse_amount(value, "spend_cap")


def _authorize(org: Organization, actor: AbstractBaseUser | None) -> None:
    # The operator CLI has no actor; in the browser only owners change caps.
    if actor is not None:
        require_role(org, actor, Role.OWNER)


@transaction.atomic
def set_spend_cap(
    org: Organization, amount: object, actor: AbstractBaseUser | None = None
) -> Decimal | None:
    _authorize(org, actor)
    cap = parse_cap(amount)
    account = credits.account_for(org)
    BillingAccount.objects.filter(pk=account.pk).update(spend_cap=cap)
    audit(org, actor, "billing.spend_cap_set", "none" if cap is None else str(cap))
    return cap


def token_caps(org: Organization) -> list[tuple[ApiToken, Decimal | None]]:
    """The org's live tokens with their spend caps (None: no cap of its own)."""
    tokens = ApiToken.objects.active().filter(org=org).order_by("name", "pk")
    caps = dict(TokenSpendCap.objects.filter(token__org=org).values_list("token_id", "amount"))
    return [(token, caps.get(token.pk)) for token in tokens]


def set_org_token_spend_cap(
    org: Organization, token_id: int, amount: object, actor: AbstractBaseUser
) -> Decimal | None:
    """The billing page's form: another org's token is a 404, exactly like a missing one."""
    token = ApiToken.objects.active().filter(org=org, pk=token_id).first()
    if token is None:
        raise NotFound("Token not found.", code="token_not_found")
    return set_token_spend_cap(token, amount, actor)


@transaction.atomic
def set_token_spend_cap(
    token: ApiToken, amount: object, actor: AbstractBaseUser | None = None
) -> Decimal | None:
    _authorize(token.org, actor)
    cap = parse_cap(amount)
    if cap is None:
        TokenSpendCap.objects.filter(token=token).delete()
    else:
        TokenSpendCap.objects.update_or_create(token=token, defaults={"amount": cap})
    audit(token.org, actor, "billing.token_spend_cap_set", token.prefix, cap=str(cap))
    return cap
