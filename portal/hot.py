"""What authentication reads on every API call, cached per process (`portal.hotcache`): the
token row by prefix, with its org and creator. Whether a token is active depends on its
row, its creator's membership of the org and whether the creator's account is active, so
a write to any of these bumps the one tokens scope (the signals here, and
`hotcache.update` for bulk updates); so does a write to an org, which the cached row
carries into every request as `principal.org`. All are rare next to API calls."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save

from portal import hotcache
from portal.models import ApiToken, Membership, Organization

TOKENS_SCOPE = "tokens"

# Keyed by prefix. The digest is compared and the expiry checked by the caller on every
# request: neither may be cached.
_by_prefix: hotcache.HotCache[ApiToken | None] = hotcache.HotCache()


def token_by_prefix(prefix: str) -> ApiToken | None:
    """The active token with this prefix, with its org and creator, or None (unknown,
    revoked, or its creator lost the right to hold tokens); expiry is the caller's to
    check. The row is shared by this process's requests: read it, never change it (but
    see `tokens.touch_last_used`)."""

    def load() -> ApiToken | None:
        active = ApiToken.objects.active().select_related("org", "created_by")
        return active.filter(prefix=prefix).first()

    return _by_prefix.get(prefix, hotcache.stamp(TOKENS_SCOPE), load)


def _tokens_changed(**kwargs: object) -> None:
    hotcache.bump(TOKENS_SCOPE)


def _user_saved(update_fields: frozenset[str] | None = None, **kwargs: object) -> None:
    # Every log-in saves `last_login` alone: that must not empty every process's cache.
    if update_fields is None or "is_active" in update_fields:
        hotcache.bump(TOKENS_SCOPE)


def connect() -> None:
    for model in (ApiToken, Membership, Organization):
        name = model.__name__
        post_save.connect(_tokens_changed, sender=model, dispatch_uid=f"hot-{name}")
        post_delete.connect(_tokens_changed, sender=model, dispatch_uid=f"hot-del-{name}")
    user = get_user_model()
    post_save.connect(_user_saved, sender=user, dispatch_uid="hot-user")
    post_delete.connect(_tokens_changed, sender=user, dispatch_uid="hot-del-user")
