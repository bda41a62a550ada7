"""Outgoing webhooks reach a local receiver, signed, and are retried after a 500.

The `standardwebhooks` library, not our signer, judges the signature."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from models_hub.demo import load_demo_catalog
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []
    fail_first = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(
            {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        )
        status = 500 if Receiver.fail_first and len(Receiver.received) == 1 else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_completed_webhook_is_signed_and_retried_after_a_500(stack, org, token_for, receiver):
    load_demo_catalog()
    response = httpx.post(
        f"{stack.base_url}/api/v1/predictions",
        headers={"Authorization": f"Bearer {token_for(org)}"},
        json={
            "model": "echo",
            "input": {"prompt": "hook me"},
            "webhook": receiver,
            "webhook_events_filter": ["completed"],
        },
    )
    assert response.status_code == 201, response.text
    wait_until(lambda: len(Receiver.received) >= 2, timeout=60)
    first, retry = Receiver.received[:2]
    payload = Webhook(org.webhook_secret).verify(retry["body"], retry["headers"])
    assert payload["id"] == response.json()["id"] and payload["status"] == "succeeded"
    assert json.loads(first["body"])["id"] == payload["id"]
    # A retry is the same message: receivers de-duplicate on webhook-id.
    assert first["headers"]["webhook-id"] == retry["headers"]["webhook-id"]
