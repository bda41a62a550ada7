"""Shared fixtures: every endpoint is tested as an owner, a teammate and an outsider."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from portal import hotcache, services
from portal.models import Organization, Role
from portal.redis_client import sync_client

PASSWORD = "correct-horse-battery-staple-42"


def clear_counters() -> None:
    """Cache entries and rate-limit windows; never worker presence, which lives in the
    same Redis database while the integration stack runs. A new cache epoch retires what
    any process cached of rows the last test's rollback removed."""
    client = sync_client()
    patterns = (f"{settings.CACHES['default']['KEY_PREFIX']}:*", "rl:*", hotcache.KEY_PREFIX + "*")
    for pattern in patterns:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    hotcache.new_epoch()


def fresh_window(window_seconds: int = 60, margin: float = 5.0) -> None:
    """Waits out the end of a fixed rate-limit window, so a burst counted by a test never
    straddles two windows (which would reset the count half-way)."""
    left = window_seconds - time.time() % window_seconds
    if left < margin:
        time.sleep(left + 0.05)


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashing() -> Iterator[None]:
    hashers = ["tests.hashers.FewRoundsPBKDF2PasswordHasher", *settings.PASSWORD_HASHERS]
    with override_settings(PASSWORD_HASHERS=hashers):
        yield


@pytest.fixture(autouse=True)
def _clean_counters():
    """Log-in throttles and rate limits live in Redis; each test starts from zero."""
    clear_counters()
    yield
    clear_counters()


def make_user(email: str) -> object:
    user = get_user_model().objects.create_user(username=email, email=email, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    services.create_personal_org(user)
    return user


@pytest.fixture
def owner(db):
    return make_user("owner@example.com")


@pytest.fixture
def teammate(db):
    return make_user("teammate@example.com")


@pytest.fixture
def outsider(db):
    return make_user("outsider@example.com")


@pytest.fixture
def staff(db):
    """An operator: a superuser, as Django admin sees one."""
    return get_user_model().objects.create_superuser(
        username="staff@example.com", email="staff@example.com", password="x-very-long-pass-1"
    )


@pytest.fixture
def org(owner, teammate) -> Organization:
    """The owner's team org, with the teammate as a plain member."""
    team = services.create_org("Acme AI", owner)
    team.memberships.create(user=teammate, role=Role.MEMBER)
    return team


@pytest.fixture
def outsider_org(outsider) -> Organization:
    return services.create_org("Rival Labs", outsider)


@pytest.fixture
def files_in_tmp(settings, tmp_path) -> Path:
    """The files storage (uploaded and inline images) in a folder of this test's own."""
    settings.STORAGES = {
        **settings.STORAGES,
        "files": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    return tmp_path


@pytest.fixture
def client_for(db) -> Callable[..., Client]:
    """A logged-in browser client working in `org` (default: the user's personal org)."""

    def make(user, org: Organization | None = None) -> Client:
        client = Client()
        client.force_login(user)
        if org is not None:
            session = client.session
            session["current_org_id"] = org.pk
            session.save()
        return client

    return make


@pytest.fixture
def token_for(db) -> Callable[..., str]:
    """Issues a token for an org and returns its plaintext."""

    def make(org: Organization, **kwargs) -> str:
        return services.issue_token(org, None, kwargs.pop("name", "test"), **kwargs).plaintext

    return make


@pytest.fixture
def api_client() -> Callable[[str | None], Client]:
    def make(token: str | None = None) -> Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return Client(headers=headers)

    return make


# --- A webhook receiver ------------------------------------------------------------------


class WebhookReceiver:
    """A real loopback HTTP server that records each POST (lower-cased headers, body) and
    answers the queued statuses, then 204."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver(settings) -> Iterator[WebhookReceiver]:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True  # the receiver is on loopback
    receiver = WebhookReceiver()
    threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
