"""Outgoing webhooks to customers: URL rules, signing, delivery, throttling of chatty events.

One parser (`parse_webhook_url`) decides what a webhook URL means, for the create-time check
and for delivery alike. Delivery resolves the host once, checks every address, and connects
to a checked address while sending the hostname in Host and TLS SNI (and verifying the
certificate against it), so the address we checked is the address we contact: no second
DNS lookup for a rebinding name to answer differently.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import socket
import time
from dataclasses import dataclass

import urllib3
from django.conf import settings
from urllib3.exceptions import ConnectTimeoutError, HTTPError

from inference.models import Prediction
from inference.payloads import prediction_payload
from portal import metrics
from portal.errors import InvalidInput
from portal.models import WEBHOOK_SECRET_PREFIX
from portal.redis_client import sync_client

WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
THROTTLED_EVENTS = ("output", "logs")
THROTTLE_MILLISECONDS = 500
MAX_URL_LENGTH = 1000
USER_AGENT = "ModelPortal-Webhooks/1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(InvalidInput):
    """A URL we never send to: its form, or where it points. A 400 at create time; at
    delivery, a permanent failure (retrying would contact the same address)."""

    def __init__(self, message: str):
        super().__init__(message, param="webhook")


class DeliveryFailed(Exception):
    """The receiver was unreachable or did not answer 2xx: the task retries with backoff."""


# Every delivery task's retries (prediction, billing and deprecation events): backoff
# from 2 s to 10 min, about half an hour in all, with the same webhook-id throughout.
DELIVERY_RETRIES = {
    "autoretry_for": (DeliveryFailed,),
    "retry_backoff": 2,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 8,
}


# --- The one URL parser ---------------------------------------------------------------

# A plain `http(s)://host[:port][/path][?query]`, nothing else: no userinfo, no fragment,
# no backslash, no whitespace or control characters, no raw non-ASCII. Parsers disagree
# on everything outside this (`\@` made urlsplit and requests see different hosts), so
# it is refused rather than interpreted.
_PCHARS = r"A-Za-z0-9\-._~!$&'()*+,;=:@%"
_URL = re.compile(
    r"(?P<scheme>(?i:https?))://"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
    rf"(?P<path>/[{_PCHARS}/]*)?"
    rf"(?P<query>\?[{_PCHARS}/?]*)?"
)
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?")
# WHATWG URL parsers (and inet_aton) read a host whose last label is a number as an IPv4
# address in decimal, octal or hex: `2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class WebhookTarget:
    scheme: str
    host: str  # a lower-case DNS name, or an IP address in its canonical form
    port: int
    path: str  # path and query; at least "/"
    ip: IPAddress | None  # the host, when it is an address literal

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.path}"


def _parse_host(raw: str) -> tuple[str, IPAddress | None]:
    if raw.startswith("["):
        try:
            ip = ipaddress.IPv6Address(raw[1:-1])
        except ValueError as exc:
            raise WebhookRefused("The webhook host is not a valid IPv6 address.") from exc
        return str(ip), ip
    host = raw.lower()
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise WebhookRefused("The webhook host is not a valid host name.")
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return host, None
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        ip = None
    if ip is None or str(ip) != host:
        raise WebhookRefused("Write an IPv4 webhook host as four decimal numbers (1.2.3.4).")
    return host, ip


def parse_webhook_url(url: str) -> WebhookTarget:
    """The URL's parts, or WebhookRefused for anything but a plain http(s) URL."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookRefused("The webhook URL is too long.")
    match = _URL.fullmatch(url)
    if match is None or _BAD_PERCENT.search(url):
        raise WebhookRefused(
            "The webhook must be a plain http(s) URL: scheme, host, optional port, path and "
            "query, with no user name, fragment, spaces or backslashes."
        )
    scheme = match["scheme"].lower()
    host, ip = _parse_host(match["host"])
    port = int(match["port"]) if match["port"] else DEFAULT_PORTS[scheme]
    if port > 65535:
        raise WebhookRefused("The webhook port must be between 1 and 65535.")
    path = (match["path"] or "/") + (match["query"] or "")
    return WebhookTarget(scheme, host, port, path, ip)


# --- Where a webhook may go -----------------------------------------------------------

# IPv6 forms that carry an IPv4 address a host may end up talking to: judged by that
# IPv4 address (a DNS64 resolver answers 64:ff9b::/96 for public IPv4-only hosts).
_EMBEDDING_IPV4 = tuple(map(ipaddress.IPv6Network, ("::ffff:0:0/96", "64:ff9b::/96")))
# Refused whole: transition forms (IPv4-compatible ::a.b.c.d, deprecated, also holding ::
# and ::1; local-use NAT64; 6to4; Teredo), whose relays may reach private IPv4 space, and
# the deprecated site-local range, which Python 3.11 still calls global.
_REFUSED_IPV6 = tuple(
    map(
        ipaddress.IPv6Network,
        ("::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "fec0::/10"),
    )
)


def is_public_address(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in _EMBEDDING_IPV4):
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(ip in network for network in _REFUSED_IPV6):
            return False
    return ip.is_global and not ip.is_multicast


def _resolve(target: WebhookTarget) -> list[IPAddress]:
    """Every address the host resolves to, in the resolver's order (raises OSError)."""
    if target.ip is not None:
        return [target.ip]
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise socket.gaierror(str(exc)) from exc
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def _refuse_private(addresses: list[IPAddress]) -> None:
    if not all(is_public_address(ip) for ip in addresses):
        raise WebhookRefused("The webhook must point to a public address.")


def validate_webhook_url(url: str) -> str:
    """The URL as we will use it; WebhookRefused (a 400) for one we would not send to."""
    target = parse_webhook_url(url)
    if not settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        try:
            addresses = _resolve(target)
        except OSError as exc:
            raise WebhookRefused("The webhook host does not resolve.") from exc
        _refuse_private(addresses)
    return target.url


def validate_events_filter(events: object) -> list[str]:
    if events is None:
        return list(WEBHOOK_EVENTS)
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise InvalidInput(
            "webhook_events_filter must be a list of strings.", param="webhook_events_filter"
        )
    unknown = sorted(set(events) - set(WEBHOOK_EVENTS))
    if unknown:
        raise InvalidInput(
            f"Unknown webhook events: {', '.join(unknown)}.", param="webhook_events_filter"
        )
    return sorted(set(events), key=WEBHOOK_EVENTS.index)


# --- Signing (Standard Webhooks) ------------------------------------------------------


def signing_key(secret: str) -> bytes:
    """The HMAC key is the base64-decoded part after `whsec_`, as the standardwebhooks
    libraries read it; our customers verify with those, unmodified."""
    return base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_request(secret: str, message_id: str, payload: dict) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
    return body, headers


def should_send(prediction_id: str, event: str) -> bool:
    """At most one output/logs webhook per prediction per 500 ms; others always go."""
    if event not in THROTTLED_EVENTS:
        return True
    key = f"webhook-throttle:{prediction_id}:{event}"
    return bool(sync_client().set(key, 1, nx=True, px=THROTTLE_MILLISECONDS))


# --- Delivery -------------------------------------------------------------------------


def _addresses_to_contact(target: WebhookTarget) -> list[IPAddress]:
    """Resolved now, at delivery: a name that pointed outside at create time may not any
    more, and a URL stored before any check gets one here."""
    try:
        addresses = _resolve(target)
    except OSError as exc:
        raise DeliveryFailed(f"{target.host} does not resolve") from exc
    if not settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        _refuse_private(addresses)
    return addresses


def _pool(target: WebhookTarget, address: IPAddress) -> urllib3.HTTPConnectionPool:
    """A connection to `address` only; TLS names and verifies the URL's host."""
    timeout = urllib3.Timeout(
        connect=settings.WEBHOOK_TIMEOUT_SECONDS, read=settings.WEBHOOK_TIMEOUT_SECONDS
    )
    if target.scheme == "http":
        return urllib3.HTTPConnectionPool(str(address), target.port, timeout=timeout, maxsize=1)
    return urllib3.HTTPSConnectionPool(
        str(address),
        target.port,
        timeout=timeout,
        maxsize=1,
        cert_reqs="CERT_REQUIRED",
        ca_certs=settings.WEBHOOK_CA_BUNDLE,
        server_hostname=target.host,
        assert_hostname=target.host,
    )


def _post(target: WebhookTarget, address: IPAddress, body: bytes, headers: dict) -> int:
    with _pool(target, address) as pool:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": target.netloc},
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=False,  # the receiver's answer is never read, however large
        )
        response.close()
        return response.status


def _send(target: WebhookTarget, addresses: list[IPAddress], body: bytes, headers: dict) -> None:
    """To the first checked address that accepts a connection; a 2xx or DeliveryFailed."""
    failure: Exception | None = None
    for address in addresses:
        try:
            status = _post(target, address, body, headers)
        except ConnectTimeoutError as exc:  # also NewConnectionError: try the next address
            failure = exc
            continue
        except HTTPError as exc:
            raise DeliveryFailed(f"{target.host}: {type(exc).__name__}") from exc
        if not 200 <= status < 300:
            raise DeliveryFailed(f"{target.host} answered {status}")
        return
    raise DeliveryFailed(f"{target.host}: could not connect") from failure


def deliver_signed(url: str, secret: str, message_id: str, payload: dict, *, event: str) -> None:
    """One attempt to POST `payload` to `url`, signed with the org's `secret` (Standard
    Webhooks, `message_id` as webhook-id), through the same checks as every delivery.

    WebhookRefused: the URL is not one we send to (never retried); DeliveryFailed: the
    receiver was unreachable or did not answer 2xx (the caller's task retries)."""
    try:
        target = parse_webhook_url(url)
        addresses = _addresses_to_contact(target)
        body, headers = signed_request(secret, message_id, payload)
        _send(target, addresses, body, headers)
    except (WebhookRefused, DeliveryFailed):
        metrics.inc("portal_webhook_failures_total", {"event": event})
        raise


def deliver(prediction: Prediction, event: str, attempt_id: str) -> None:
    """One signed delivery attempt to the prediction's webhook (see `deliver_signed`)."""
    deliver_signed(
        prediction.webhook,
        prediction.org.webhook_secret,
        f"{prediction.id}-{event}-{attempt_id}",
        prediction_payload(prediction),
        event=event,
    )
