"""A wait or stream takes its concurrency slot in a worker thread, which looks up the org's
plan: that thread's database connection must go back to the pool. When it did not, every
non-streamed `/v1` call kept one, and once the pool was empty every request of the process
failed with 500 (issue #11, item 2: no tenant may exhaust what others share)."""

from __future__ import annotations

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def test_v1_calls_give_their_slot_lookups_connection_back(org, token_for, api_client):
    client = api_client(token_for(org, scopes=["predict", "read"]))
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    pool_size = settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"]
    for _ in range(pool_size + 2):
        response = client.post("/v1/chat/completions", body, content_type="application/json")
        assert response.status_code == 404, response.content
