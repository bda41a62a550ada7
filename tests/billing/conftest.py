"""Billing fixtures: plans, a model to call, a live worker announcement, localstripe, a
recording fake of Stripe's hosted APIs, and signed webhook delivery."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import stripe
from django.test import Client

from billing.models import Plan, PublisherAccount
from inference import presence
from models_hub.demo import load_demo_catalog
from models_hub.models import ModelListing
from portal.models import Role

WEBHOOK_SECRET = "whsec_test_billing"
STRIPE_KEY = "sk_test_billing"
WORKER = "billing-tests@host"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def stripe_settings(settings):
    settings.STRIPE_SECRET_KEY = STRIPE_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    stripe.max_network_retries = 0
    return settings


@pytest.fixture
def listings(db) -> dict[str, ModelListing]:
    return {listing.slug: listing for listing in load_demo_catalog()}


@pytest.fixture
def echo(listings) -> ModelListing:
    return listings["echo"]


@pytest.fixture
def listing(org, echo) -> ModelListing:
    """A copy of echo, published by `org` (public), at a price in force since before now."""
    from billing import prices

    echo.pk, echo.slug, echo.org = None, "acme-echo", org
    echo.save()
    made = ModelListing.objects.get(slug="acme-echo")
    prices.set_price(made, input_per_million="1", output_per_million="2")
    return made


@pytest.fixture
def onboarded(org) -> PublisherAccount:
    """`org` as a publisher Stripe can pay out."""
    return PublisherAccount.objects.create(
        org=org, stripe_account_id="acct_pages", charges_enabled=True, payouts_enabled=True,
        details_submitted=True,
    )  # fmt: skip


@pytest.fixture
def admin(teammate, org):
    """The teammate, made an admin of `org`."""
    org.memberships.filter(user=teammate).update(role=Role.ADMIN)
    return teammate


@pytest.fixture
def priced(echo):
    """Echo at prices whose worst case for 10 new tokens is 0.025 (tests/billing/test_quota.py)."""
    from billing import prices

    return prices.set_price(
        echo, input_per_million="1000", output_per_million="2000", per_request="0.001"
    )


@pytest.fixture
def free_plan(listings) -> Plan:
    plan = Plan.objects.create(
        slug="free", name="Free", is_default=True, allowance=Decimal("1"),
        rate_limit_per_minute=10_000,
    )  # fmt: skip
    plan.included_models.set([listings["echo"], listings["all-minilm-l6-v2"]])
    return plan


@pytest.fixture
def pro_plan(listings) -> Plan:
    return Plan.objects.create(
        slug="pro", name="Pro", price_cents=2000, allowance=Decimal("5"),
        rate_limit_per_minute=10_000, tasks=["text-generation"],
        overage_allowed=True, stripe_price_id="price_pro",
        stripe_overage_price_id="price_pro_overage", trial_days=14, sort_order=1,
    )  # fmt: skip


@pytest.fixture
def team_plan(listings) -> Plan:
    return Plan.objects.create(
        slug="team", name="Team", price_cents=10000, allowance=None,
        rate_limit_per_minute=10_000,
        tasks=["text-generation", "embeddings", "text-classification"],
        stripe_price_id="price_team", sort_order=2,
    )  # fmt: skip


@pytest.fixture
def worker_present() -> Iterator[None]:
    """Admission asks whether a worker serves the queue; announce one (no task runs)."""
    presence.announce(WORKER, ["cpu", "default"])
    yield
    presence.withdraw(WORKER, ["cpu", "default"])


# --- Signed webhooks ---------------------------------------------------------------


def make_event(type_: str, obj: dict, created: int | None = None, *, id_: str = "") -> dict:
    return {
        "id": id_ or f"evt_{type_.replace('.', '_')}_{time.time_ns()}",
        "object": "event",
        "type": type_,
        "created": created if created is not None else int(time.time()),
        "livemode": False,
        "api_version": stripe.api_version,
        "data": {"object": obj},
    }


def sign(body: str, *, timestamp: int | None = None, secret: str = WEBHOOK_SECRET) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    return stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=ts)


@pytest.fixture
def post_event(db) -> Callable[..., object]:
    def post(event: dict | str, **sign_kwargs) -> object:
        body = event if isinstance(event, str) else json.dumps(event)
        return Client().post(
            "/billing/stripe/webhook/",
            data=body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=sign(body, **sign_kwargs),
        )

    return post


# --- localstripe (customers, products, plans, subscriptions, invoices) ---------------


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    port = free_port()
    binary = str(Path(sys.executable).with_name("localstripe"))
    process = subprocess.Popen(
        [binary, "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError("localstripe did not start")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def localstripe(localstripe_url, monkeypatch) -> str:
    monkeypatch.setattr(stripe, "api_base", localstripe_url)
    return localstripe_url


# --- A recording fake of Stripe's hosted APIs (Checkout, Portal, Prices, meters) ----


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class FakeStripe:
    """Answers like api.stripe.com for the endpoints localstripe lacks, and records every
    request exactly as the SDK sent it."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    responses: dict[tuple[str, str], list[tuple[int, dict]]] = field(default_factory=dict)

    def respond(self, method: str, path: str, status: int, body: dict) -> None:
        self.responses.setdefault((method, path), []).append((status, body))

    def answer(self, method: str, path: str) -> tuple[int, dict]:
        queued = self.responses.get((method, path))
        if queued:
            return queued.pop(0) if len(queued) > 1 else queued[0]
        return 404, {"error": {"type": "invalid_request_error", "message": f"no {path}"}}

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]


def _handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            parsed = urlparse(self.path)
            form = parse_qs(raw or parsed.query, keep_blank_values=True)
            fake.requests.append(Recorded(self.command, parsed.path, form, dict(self.headers)))
            status, body = fake.answer(self.command, parsed.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args) -> None:
            return

    return Handler


@pytest.fixture
def fake_stripe(monkeypatch) -> Iterator[FakeStripe]:
    fake = FakeStripe()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(stripe, "api_base", fake.url)
    yield fake
    server.shutdown()
    server.server_close()
