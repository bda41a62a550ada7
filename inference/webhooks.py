"""Outgoing webhooks to customers: URL rules, signing, throttling of chatty events."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from urllib.parse import urlsplit

import requests
from django.conf import settings

from inference.models import Prediction
from inference.payloads import prediction_payload
from portal import metrics
from portal.errors import InvalidInput
from portal.redis_client import sync_client

WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
THROTTLED_EVENTS = ("output", "logs")
THROTTLE_MILLISECONDS = 500
MAX_URL_LENGTH = 1000


def _is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_global and not ip.is_multicast


def validate_webhook_url(url: str) -> str:
    """http(s) only; in production, never an address inside our own network (SSRF)."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput("The webhook URL is too long.", param="webhook")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("The webhook must be an http(s) URL.", param="webhook")
    if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        return url
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise InvalidInput("The webhook host does not resolve.", param="webhook") from exc
    if not all(_is_public_address(info[4][0]) for info in infos):
        raise InvalidInput("The webhook must point to a public address.", param="webhook")
    return url


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


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_request(secret: str, message_id: str, payload: dict) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
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


def deliver(prediction: Prediction, event: str, attempt_id: str) -> None:
    """One signed delivery attempt; raises on failure so that the task retries."""
    body, headers = signed_request(
        prediction.org.webhook_secret,
        f"{prediction.id}-{event}-{attempt_id}",
        prediction_payload(prediction),
    )
    try:
        response = requests.post(
            prediction.webhook,
            data=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
        response.raise_for_status()
    except requests.RequestException:
        metrics.inc("portal_webhook_failures_total", {"event": event})
        raise
