"""What admission reads on every call and operators or webhooks change rarely, cached per
process (`portal.hotcache`): plans and prices under one scope, each org's subscriptions
(its site plan's and its listings') and token spend caps under the org's. The signals
here bump a scope on every write to its rows, the admin's and the shell's included."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.db.models.signals import m2m_changed, post_delete, post_save

from billing.models import ListingPrice, ListingSubscription, Plan, Subscription, TokenSpendCap
from portal import hotcache

CONFIG_SCOPE = "billing"


def org_scope(org_id: int) -> str:
    return f"billing:org:{org_id}"


def stamp_for(org_id: int) -> hotcache.Stamp | None:
    """The stamp of everything billing caches for the org (one Redis round trip)."""
    return hotcache.stamp(CONFIG_SCOPE, org_scope(org_id))


def config_part(stamp: hotcache.Stamp | None) -> hotcache.Stamp | None:
    """The part of `stamp_for` that plans and prices depend on (not the org's)."""
    return None if stamp is None else stamp[:2]


def config_stamp() -> hotcache.Stamp | None:
    return hotcache.stamp(CONFIG_SCOPE)


def _config_changed(**kwargs: object) -> None:
    hotcache.bump(CONFIG_SCOPE)


def _subscription_changed(instance: Subscription | ListingSubscription, **kwargs: object) -> None:
    hotcache.bump(org_scope(instance.org_id))


def _token_cap_changed(instance: TokenSpendCap, **kwargs: object) -> None:
    try:
        scope = org_scope(instance.token.org_id)
    except ObjectDoesNotExist:
        scope = CONFIG_SCOPE  # the token went first: wider than needed, never stale
    hotcache.bump(scope)


def connect() -> None:
    for model in (Plan, ListingPrice):
        post_save.connect(_config_changed, sender=model, dispatch_uid=f"hot-{model.__name__}")
        post_delete.connect(_config_changed, sender=model, dispatch_uid=f"hot-del-{model.__name__}")
    m2m_changed.connect(
        _config_changed, sender=Plan.included_models.through, dispatch_uid="hot-plan-models"
    )
    post_save.connect(_subscription_changed, sender=Subscription, dispatch_uid="hot-sub")
    post_delete.connect(_subscription_changed, sender=Subscription, dispatch_uid="hot-del-sub")
    post_save.connect(_subscription_changed, sender=ListingSubscription, dispatch_uid="hot-lsub")
    post_delete.connect(
        _subscription_changed, sender=ListingSubscription, dispatch_uid="hot-del-lsub"
    )
    post_save.connect(_token_cap_changed, sender=TokenSpendCap, dispatch_uid="hot-cap")
    post_delete.connect(_token_cap_changed, sender=TokenSpendCap, dispatch_uid="hot-del-cap")
