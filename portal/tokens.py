"""API token format, digest and resolution: the one place that knows what a token is.

A token is `mp_<prefix>_<secret>`. The prefix (indexed, unique) finds the row; the HMAC of
the whole token, compared in constant time, proves it. The plaintext is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from portal import hot
from portal.models import ApiToken

PREFIX_LENGTH = 8
SECRET_LENGTH = 40
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
TOKEN_PATTERN = re.compile(
    rf"^mp_(?P<prefix>[a-z0-9]{{{PREFIX_LENGTH}}})_(?P<secret>[A-Za-z0-9]{{{SECRET_LENGTH}}})$"
)


@dataclass(frozen=True)
class NewToken:
    prefix: str
    plaintext: str
    digest: str


def digest_token(plaintext: str) -> str:
    key = settings.TOKEN_HMAC_KEY.encode()
    return hmac.new(key, plaintext.encode(), hashlib.sha256).hexdigest()


def generate_token() -> NewToken:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    plaintext = f"mp_{prefix}_{secret}"
    return NewToken(prefix=prefix, plaintext=plaintext, digest=digest_token(plaintext))


def find_active_token(plaintext: str) -> ApiToken | None:
    """The active token this plaintext proves, or None (malformed, unknown, revoked, expired)."""
    match = TOKEN_PATTERN.match(plaintext)
    if match is None:
        return None
    token = hot.token_by_prefix(match["prefix"])
    if token is None or not hmac.compare_digest(token.digest, digest_token(plaintext)):
        return None
    if not token.is_active:  # expiry comes with time, not with a write
        return None
    touch_last_used(token)
    return token


def touch_last_used(token: ApiToken) -> None:
    """Record use at most once per resolution window, so busy tokens cost no write each call.

    The cached row (`hot.token_by_prefix`) remembers this process's last write, so each
    process writes at most once per window and token; the UPDATE bumps nothing (it sends
    no signal), or every call would empty every process's cache."""
    now = timezone.now()
    window = timedelta(seconds=settings.TOKEN_LAST_USED_RESOLUTION_SECONDS)
    if token.last_used_at is not None and now - token.last_used_at < window:
        return
    # Conditional so that concurrent requests write once, not once each.
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - window)
    ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
