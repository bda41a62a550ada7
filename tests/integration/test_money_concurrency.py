"""Calls at once against limits that allow exactly a quarter of them, through the real
ASGI server and workers: exactly that many are admitted, the others get 402, and once
everything settled what was paid never exceeds the limit and the credit balance never
went below zero (issue #12).

Every path takes 200 calls against 50 worst cases: REST, `/v1` (non-streamed and
streamed), and REST watched to its end over the prediction's WebSocket (how the playground
and Replicate-style clients follow a call)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
import websockets.sync.client as ws_client
from django.db.models import Sum

from billing import caps, credits, metering, prices
from billing.models import BillingAccount, CallCost, Plan, UsagePeriod, UsageRecord
from inference.models import TERMINAL_STATUSES, Prediction
from models_hub.demo import load_demo_catalog
from models_hub.models import ModelListing
from tests.conftest import fresh_window
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Path -> (calls at once, worst cases the limit allows).
LOAD = {path: (200, 50) for path in ("rest", "rest_ws", "v1", "v1_stream")}
PROMPT = "hello there"


@pytest.fixture
def paying_org(org):
    """A team workspace on a default plan with no allowance: every call is paid, from
    credits, and no concurrency or rate cap gets in the way."""
    load_demo_catalog()
    echo = ModelListing.objects.get(slug="echo")
    # Priced per request only: a call settles at exactly its worst case, so calls that
    # finish while others are still arriving free no room under the limit, and exactly
    # 50 are admitted however the 200 interleave with the workers.
    prices.set_price(echo, per_request="0.01")
    plan = Plan.objects.create(
        slug="metered", name="Metered", is_default=True, allowance=Decimal(0),
        rate_limit_per_minute=10**6, max_concurrent_waits=10**4, max_concurrent_streams=10**4,
    )  # fmt: skip
    plan.included_models.set([echo])
    fresh_window()
    return org


def _rest(client: httpx.Client) -> int:
    body = {"model": "echo", "input": {"prompt": PROMPT, "max_new_tokens": 10}}
    return client.post("/api/v1/predictions", json=body).status_code


def _rest_ws(client: httpx.Client) -> int:
    """Created over REST, then followed over its WebSocket until `done`."""
    body = {"model": "echo", "input": {"prompt": PROMPT, "max_new_tokens": 10}}
    response = client.post("/api/v1/predictions", json=body)
    if response.status_code != 201:
        return response.status_code
    url = response.json()["urls"]["websocket"]
    headers = {"Authorization": client.headers["Authorization"]}
    with ws_client.connect(url, additional_headers=headers, open_timeout=60) as socket:
        while json.loads(socket.recv(timeout=120))["type"] != "done":
            pass
    return response.status_code


def _chat_body(stream: bool) -> dict:
    return {
        "model": "echo",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 10,
        "stream": stream,
    }


def _v1(client: httpx.Client) -> int:
    return client.post("/v1/chat/completions", json=_chat_body(False)).status_code


def _v1_stream(client: httpx.Client) -> int:
    with client.stream("POST", "/v1/chat/completions", json=_chat_body(True)) as response:
        response.read()  # the whole stream: the call runs to its end and settles
        return response.status_code


def _worst_case(path: str) -> Decimal:
    """The call's worst case, as admission works it out (a chat adds its template's
    tokens to the prompt's)."""
    listing = ModelListing.objects.get(slug="echo")
    if path.startswith("rest"):
        data = {"prompt": PROMPT, "max_new_tokens": 10}
    else:
        data = {"messages": _chat_body(False)["messages"], "max_new_tokens": 10}
    return metering.quote(listing, data).max_cost


def _hammer(stack, token: str, path: str) -> list[int]:
    calls, _ = LOAD[path]
    call = PATHS[path]
    barrier = threading.Barrier(calls)
    headers = {"Authorization": f"Bearer {token}"}

    def one(_: int) -> int:
        with httpx.Client(base_url=stack.base_url, headers=headers, timeout=120) as client:
            barrier.wait()
            return call(client)

    with ThreadPoolExecutor(max_workers=calls) as pool:
        return list(pool.map(one, range(calls)))


def _all_settled(org, admitted: int) -> None:
    def done() -> bool:
        open_ = Prediction.objects.filter(org=org).exclude(status__in=TERMINAL_STATUSES)
        return not open_.exists() and CallCost.objects.filter(org=org).count() == admitted

    wait_until(done, 120)


def _paid(org) -> Decimal:
    totals = CallCost.objects.filter(org=org).aggregate(
        credits=Sum("paid_by_credits"), overage=Sum("paid_as_overage")
    )
    return (totals["credits"] or Decimal(0)) + (totals["overage"] or Decimal(0))


PATHS = {"rest": _rest, "rest_ws": _rest_ws, "v1": _v1, "v1_stream": _v1_stream}


@pytest.mark.parametrize("path", PATHS)
def test_a_spend_cap_admits_exactly_its_worst_cases(stack, paying_org, token_for, path):
    org = paying_org
    token = token_for(org, rate_limit_per_minute=10**6)
    worst = _worst_case(path)
    calls, admitted = LOAD[path]
    credits.grant_credits(org, worst * calls)
    caps.set_spend_cap(org, worst * admitted)

    statuses = _hammer(stack, token, path)
    assert statuses.count(402) == calls - admitted, sorted(set(statuses))
    assert UsageRecord.objects.filter(org=org).count() == admitted
    _all_settled(org, admitted)
    period = UsagePeriod.objects.get(org=org)
    assert period.paid_reserved == 0
    assert _paid(org) == period.spent <= BillingAccount.objects.get(org=org).spend_cap


@pytest.mark.parametrize("path", ["rest", "rest_ws", "v1_stream"])
def test_credits_admit_exactly_the_worst_cases_they_cover(stack, paying_org, token_for, path):
    org = paying_org
    token = token_for(org, rate_limit_per_minute=10**6)
    worst = _worst_case(path)
    calls, admitted = LOAD[path]
    credits.grant_credits(org, worst * admitted)

    statuses = _hammer(stack, token, path)
    assert statuses.count(402) == calls - admitted, sorted(set(statuses))
    _all_settled(org, admitted)
    account = BillingAccount.objects.get(org=org)
    assert account.credits_reserved == 0
    assert account.balance == worst * admitted - _paid(org) >= 0
