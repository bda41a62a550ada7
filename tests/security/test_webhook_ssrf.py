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
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inference import presence, webhooks
from inference.models import Prediction, Status
from inference.tasks import deliver_webhook
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
    "http://[fec0::1]:{port}/",
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


def test_the_task_gives_up_on_a_refused_url_without_retrying(
    private_refused, listener, echo_listing, org, owner
):
    prediction = _stored(org, owner, echo_listing, f"http://localhost:{listener.port}/hook")
    result = deliver_webhook.apply(args=(prediction.id, "completed"))
    assert result.successful()  # a WebhookRefused left to Celery would fail the task
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


# --- TLS to a pinned address -----------------------------------------------------------


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer=None, *, ca: bool = False):
    """A certificate for `subject` (a DNS name), self-signed unless `issuer` (cert, key)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_cert, issuer_key = issuer or (None, key)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(*objects) -> bytes:
    out = b""
    for obj in objects:
        if isinstance(obj, x509.Certificate):
            out += obj.public_bytes(serialization.Encoding.PEM)
        else:
            out += obj.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
    return out


@pytest.fixture
def tls_listener(tmp_path) -> Iterator[tuple[Listener, str, list[str]]]:
    """An HTTPS listener on 127.0.0.1 whose certificate names `localhost`, issued by a test
    CA; yields it, the CA bundle's path and the SNI names clients sent."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _issue("Webhook test CA", ca_key, ca=True)
    (tmp_path / "ca.pem").write_bytes(_pem(ca))
    (tmp_path / "server.pem").write_bytes(_pem(_issue("localhost", key, (ca, ca_key)), key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem")
    sni: list[str] = []
    context.sni_callback = lambda sock, name, ctx: sni.append(name)
    hits: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hits))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Listener(server.server_address[1], hits), str(tmp_path / "ca.pem"), sni
    server.shutdown()
    server.server_close()


def test_https_delivery_verifies_the_certificate_against_the_host_name(
    settings, tls_listener, echo_listing, org, owner
):
    """Connected to the checked address (127.0.0.1), but TLS speaks to and verifies the
    URL's host name; a certificate that does not name the host, or that no trusted CA
    issued, gets nothing sent."""
    listener, ca_bundle, sni = tls_listener
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    settings.WEBHOOK_CA_BUNDLE = ca_bundle
    url = f"https://localhost:{listener.port}/hook"
    webhooks.deliver(_stored(org, owner, echo_listing, url), "completed", "attempt-1")
    assert listener.hits == ["/hook"] and sni == ["localhost"]
    # The same server by address: its certificate does not name 127.0.0.1.
    by_address = _stored(org, owner, echo_listing, f"https://127.0.0.1:{listener.port}/ip")
    with pytest.raises(webhooks.DeliveryFailed):
        webhooks.deliver(by_address, "completed", "attempt-1")
    # Without the test CA among the trusted ones, the certificate is refused.
    settings.WEBHOOK_CA_BUNDLE = certifi.where()
    with pytest.raises(webhooks.DeliveryFailed):
        webhooks.deliver(_stored(org, owner, echo_listing, url), "completed", "attempt-1")
    assert listener.hits == ["/hook"]
