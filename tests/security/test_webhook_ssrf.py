"""Outgoing webhooks never reach our own network (issue #11, item 1).

A real loopback listener stands in for an internal service. With private addresses
refused (production), no spelling of a loopback or private address may reach it: not at
create time (400, nothing stored) and not at delivery time, for URLs stored before any
check or hosts whose DNS answer changed since. With them allowed (the one-command run),
a delivery to the listener still works.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inference import presence, webhooks
from inference.models import Prediction, Status
from tests.security.test_limits import assert_error

pytestmark = pytest.mark.django_db


@dataclass
class Listener:
    port: int
    hits: list[str] = field(default_factory=list)


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler(hits: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def listener() -> Iterator[Listener]:
    """One port on 127.0.0.1 and on ::1, so that v4 and v6 spellings both land here."""
    hits: list[str] = []
    v4 = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hits))
    port = v4.server_address[1]
    servers = [v4]
    # If the port is taken on ::1, the v4 listener still catches what matters most.
    with contextlib.suppress(OSError):
        servers.append(_V6Server(("::1", port), _handler(hits)))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Listener(port, hits)
    for server in servers:
        server.shutdown()
        server.server_close()


# Each form reaches (or would reach) the listener's port on this machine. `{port}` is
# filled in per test.
BYPASS_FORMS = [
    # urlsplit sees 1.1.1.1; requests and browsers connect to 127.0.0.1.
    "http://127.0.0.1:{port}\\@1.1.1.1/x",
    "http://1.1.1.1@127.0.0.1:{port}/x",
    "http://user:pass@127.0.0.1:{port}/x",
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "HTTP://LOCALHOST:{port}/",
    "http://127.0.0.1.:{port}/",
    "http://0:{port}/",
    "http://0.0.0.0:{port}/",
    # Odd IPv4 spellings that resolvers and connect() read as 127.0.0.1.
    "http://2130706433:{port}/",
    "http://0177.0.0.1:{port}/",
    "http://0x7f.1:{port}/",
    "http://0x7f000001:{port}/",
    "http://127.1:{port}/",
    "http://127.000.000.001:{port}/",
    # IPv6 and IPv4 embedded in IPv6.
    "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::ffff:7f00:1]:{port}/",
    "http://[::127.0.0.1]:{port}/",
    "http://[64:ff9b::7f00:1]:{port}/",
    "http://[64:ff9b::10.0.0.1]:{port}/",
    "http://[64:ff9b:1::7f00:1]:{port}/",
    "http://[2002:7f00:1::]:{port}/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/",
    "http://[fe80::1%25lo]:{port}/",
    "http://[fd00::1]:{port}/",
    # Private, link-local (cloud metadata) and shared ranges.
    "http://10.0.0.1:{port}/",
    "http://169.254.169.254:{port}/latest/meta-data/",
    "http://100.64.0.1:{port}/",
    "http://192.168.1.1:{port}/",
    # Not a plain URL at all.
    "http://127.0.0.1:{port}/#frag",
    "http://127.0.0.1:{port}/ x",
    "http://127.0.0.1:{port}/\tx",
    "http://127.0.0.1:{port}/\r\nX-Injected: 1",
    "http://127.0.0.1:{port}\t/",
]


def _forms(port: int) -> list[str]:
    return [form.format(port=port) for form in BYPASS_FORMS]


@pytest.fixture
def private_refused(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False


@pytest.fixture
def worker_present(echo_listing) -> Iterator[None]:
    """Admission gets as far as creating the prediction (no worker runs it here)."""
    presence.announce("ssrf-test@host", [echo_listing.queue])
    yield
    presence.withdraw("ssrf-test@host", [echo_listing.queue])


def test_every_bypass_form_is_refused_at_create_time_and_nothing_is_sent(
    private_refused, worker_present, listener, echo_listing, org, token_for, api_client
):
    client = api_client(token_for(org))

    def create(url: str):
        return client.post(
            "/api/v1/predictions",
            {"model": echo_listing.slug, "input": {"prompt": "hi"}, "webhook": url},
            content_type="application/json",
        )

    for url in _forms(listener.port):
        error = assert_error(create(url), 400, "invalid_request_error")
        assert error["param"] == "webhook", url
    assert not Prediction.objects.exists()
    assert listener.hits == []
    # The same request with a public address is admitted: the 400s above are the check's.
    assert create("https://93.184.215.14/hook").status_code == 201


def _stored(org, owner, echo_listing, url: str) -> Prediction:
    """A prediction whose webhook was stored without any check (an old row, or a host
    whose DNS answer changed since the check)."""
    return Prediction.objects.create(
        org=org,
        user=owner,
        model=echo_listing,
        input={"prompt": "hi"},
        status=Status.SUCCEEDED,
        webhook=url,
        webhook_events_filter=["completed"],
    )


def test_delivery_refuses_every_bypass_form_stored_before_any_check(
    private_refused, listener, echo_listing, org, owner
):
    for url in _forms(listener.port):
        prediction = _stored(org, owner, echo_listing, url)
        with pytest.raises(webhooks.WebhookRefused):
            webhooks.deliver(prediction, "completed", "attempt-1")
    assert listener.hits == []


def test_a_host_that_now_resolves_to_loopback_is_not_contacted(
    private_refused, listener, echo_listing, org, owner
):
    """`localhost` stands in for a public name whose DNS answer turned private after the
    create-time check: delivery resolves again and refuses what it finds."""
    prediction = _stored(org, owner, echo_listing, f"http://localhost:{listener.port}/hook")
    with pytest.raises(webhooks.WebhookRefused):
        webhooks.deliver(prediction, "completed", "attempt-1")
    assert listener.hits == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.215.14/",
        "http://",
        "http:///x",
        "http:93.184.215.14/x",
        "//93.184.215.14/x",
        "http://93.184.215.14:0/",
        "http://93.184.215.14:99999/",
        "http://93.184.215.14:/",
        "http://93.184.215.14/\\x",
        "http://93.184.215.14/ü",
        "http://93.184.215.14/x?a=%zz",
        "http://exa mple.com/",
        "http://exa_mple.com/",
        "http://-example.com/",
        "http://example..com/",
        "http://[93.184.215.14]/",
        "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c/",
    ],
)
def test_urls_that_are_not_plain_http_urls_are_refused_whatever_the_setting(settings, url):
    for allowed in (False, True):
        settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = allowed
        with pytest.raises(webhooks.InvalidInput):
            webhooks.validate_webhook_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.215.14/hooks?x=1&y=%20",
        "http://93.184.215.14:8080/a/b;c=d/@e:f",
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:8443/",
        "https://[64:ff9b::5db8:d70e]/nat64-of-a-public-address",
        "https://[::ffff:93.184.215.14]/",
    ],
)
def test_plain_urls_to_public_addresses_are_accepted(private_refused, url):
    assert webhooks.validate_webhook_url(url)


def test_with_private_addresses_allowed_a_loopback_listener_still_gets_the_delivery(
    settings, listener, echo_listing, org, owner
):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    for host in ("127.0.0.1", "localhost"):
        url = webhooks.validate_webhook_url(f"http://{host}:{listener.port}/hook?via={host}")
        webhooks.deliver(_stored(org, owner, echo_listing, url), "completed", "attempt-1")
    assert listener.hits == ["/hook?via=127.0.0.1", "/hook?via=localhost"]
    # The setting relaxes where a webhook may go, never what a URL may look like.
    with pytest.raises(webhooks.InvalidInput):
        webhooks.validate_webhook_url(f"http://127.0.0.1:{listener.port}\\@1.1.1.1/x")
