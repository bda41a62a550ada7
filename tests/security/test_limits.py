"""Abuse limits (issue #8): each one answers with API.md's error body and status, and 429s
carry Retry-After. No worker runs here, so a request that passes every limit ends at the
503 `no_worker` answer, which proves it got past them."""

from __future__ import annotations

import pytest
from django.test import Client

from inference.runners.generation import resolve_params
from models_hub.validation import validate_input
from portal.errors import InvalidInput
from portal.ratelimit import ip_bucket
from tests.conftest import PASSWORD, fresh_window
from tests.security.conftest import ECHO_CAP

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, type_: str, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"type", "code", "message", "param"}
    assert error["type"] == type_
    if code is not None:
        assert error["code"] == code
    return error


def assert_retry_after(response, window_seconds: int = 60) -> None:
    assert 1 <= int(response["Retry-After"]) <= window_seconds + 1


def predict(client: Client, model_input: dict, model: str = "sec-echo"):
    return client.post(
        "/api/v1/predictions",
        {"model": model, "input": model_input},
        content_type="application/json",
    )


def chat(client: Client, model: str = "sec-echo", **body):
    messages = body.pop("messages", [{"role": "user", "content": "hi"}])
    return client.post(
        "/v1/chat/completions",
        {"model": model, "messages": messages, **body},
        content_type="application/json",
    )


# --- Input text size (400) --------------------------------------------------------------


def test_prompt_over_the_character_cap_is_400(settings, echo_listing, org, token_for, api_client):
    settings.MAX_INPUT_CHARS = 500
    client = api_client(token_for(org))
    error = assert_error(predict(client, {"prompt": "a" * 501}), 400, "invalid_request_error")
    assert error["code"] == "input_too_long" and error["param"] == "input"
    assert "500" in error["message"] and "a" * 20 not in error["message"]
    assert_error(predict(client, {"prompt": "a" * 500}), 503, "service_unavailable", "no_worker")


def test_chat_messages_count_together(settings, echo_listing, org, token_for, api_client):
    settings.MAX_INPUT_CHARS = 500
    messages = [{"role": "user", "content": "b" * 200} for _ in range(3)]
    client = api_client(token_for(org))
    assert_error(predict(client, {"messages": messages}), 400, "invalid_request_error")
    error = assert_error(chat(client, messages=messages), 400, "invalid_request_error")
    assert error["code"] == "input_too_long"


def test_a_listing_may_lower_the_character_cap(echo_listing, org, token_for, api_client):
    echo_listing.max_params = {"max_new_tokens": ECHO_CAP, "max_input_chars": 50}
    echo_listing.save()
    client = api_client(token_for(org))
    error = assert_error(predict(client, {"prompt": "c" * 51}), 400, "invalid_request_error")
    assert "50" in error["message"]
    assert_error(predict(client, {"prompt": "c" * 50}), 503, "service_unavailable")


def test_embedding_batches_count_every_text(settings, echo_listing):
    settings.MAX_INPUT_CHARS = 100
    echo_listing.task = "embeddings"
    echo_listing.input_schema = {"type": "object"}
    with pytest.raises(InvalidInput) as caught:
        validate_input(echo_listing, {"input": ["d" * 40, "d" * 40, "d" * 40]})
    assert caught.value.status == 400 and caught.value.code == "input_too_long"


# --- max_new_tokens / max_tokens caps (400) ---------------------------------------------


def test_max_new_tokens_above_the_listing_cap_is_400(echo_listing, org, token_for, api_client):
    client = api_client(token_for(org))
    over = {"prompt": "hi", "max_new_tokens": ECHO_CAP + 1}
    error = assert_error(predict(client, over), 400, "invalid_request_error")
    assert error["param"] == "input.max_new_tokens" and str(ECHO_CAP) in error["message"]
    at_cap = {"prompt": "hi", "max_new_tokens": ECHO_CAP}
    assert_error(predict(client, at_cap), 503, "service_unavailable")


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
def test_openai_max_tokens_above_the_cap_is_400(echo_listing, org, token_for, api_client, name):
    response = chat(api_client(token_for(org)), **{name: ECHO_CAP + 1})
    error = assert_error(response, 400, "invalid_request_error")
    assert error["param"] == "max_tokens"


def test_an_omitted_max_new_tokens_never_exceeds_the_cap(echo_listing):
    """The runner's fallback (256) is above this listing's cap: the cap still applies."""
    params = resolve_params(echo_listing.runtime_spec, {"prompt": "hi"})
    assert params.max_new_tokens == ECHO_CAP


# --- Per-token rate limit (429) ---------------------------------------------------------


def test_token_rate_limit_is_429_with_retry_after(echo_listing, org, token_for, api_client):
    fresh_window()
    limited = api_client(token_for(org, rate_limit_per_minute=2))
    for _ in range(2):
        assert_error(predict(limited, {"prompt": "hi"}), 503, "service_unavailable")
    response = predict(limited, {"prompt": "hi"})
    assert_error(response, 429, "rate_limit_error", "rate_limited")
    assert_retry_after(response)
    # The OpenAI layer admits through the same limiter.
    assert_error(chat(limited), 429, "rate_limit_error")
    # Another token of the same org has its own window.
    other = api_client(token_for(org, name="other"))
    assert_error(predict(other, {"prompt": "hi"}), 503, "service_unavailable")


# --- Per-IP rate limit (429) ------------------------------------------------------------


@pytest.fixture
def ip_limit_3(settings):
    settings.IP_RATE_LIMIT_PER_MINUTE = 3
    fresh_window()
    return settings


def test_ip_limit_is_429_on_api_and_pages(ip_limit_3, db):
    client = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(3):
        assert client.get("/api/v1/models").status_code == 200
    response = client.get("/api/v1/models")
    assert_error(response, 429, "rate_limit_error", "ip_rate_limited")
    assert_retry_after(response)
    page = client.get("/pricing/")
    assert page.status_code == 429 and page["Content-Type"].startswith("text/plain")
    assert_retry_after(page)
    # Probes stay exempt; other addresses have their own count.
    assert client.get("/healthz").status_code == 200
    assert Client(REMOTE_ADDR="198.51.100.8").get("/api/v1/models").status_code == 200


def test_ip_limit_counts_authenticated_callers_too(ip_limit_3, org, token_for):
    client = Client(REMOTE_ADDR="198.51.100.9", headers={"Authorization": "Bearer junk"})
    for _ in range(3):
        assert client.get("/api/v1/account").status_code == 401
    assert_error(client.get("/api/v1/account"), 429, "rate_limit_error")


def test_forwarded_for_is_ignored_without_trusted_proxies(ip_limit_3, db):
    client = Client(REMOTE_ADDR="198.51.100.10")
    for hop in range(4):
        response = client.get("/api/v1/models", headers={"X-Forwarded-For": f"10.0.0.{hop}"})
    assert response.status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(ip_limit_3, db):
    ip_limit_3.TRUSTED_PROXY_COUNT = 1
    proxy = Client(REMOTE_ADDR="10.0.0.1")

    def get(forwarded: str):
        return proxy.get("/api/v1/models", headers={"X-Forwarded-For": forwarded})

    # The client may prepend anything; only the hop our proxy appended counts.
    for spoofed in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        assert get(f"{spoofed}, 203.0.113.5").status_code == 200
    assert get("4.4.4.4, 203.0.113.5").status_code == 429
    assert get("203.0.113.6").status_code == 200


def test_ipv6_clients_are_counted_per_64():
    assert ip_bucket("2001:db8:1:2:aaaa::1") == ip_bucket("2001:db8:1:2:bbbb::2")
    assert ip_bucket("2001:db8:1:2::1") != ip_bucket("2001:db8:1:3::1")
    assert ip_bucket("::ffff:192.0.2.1") == ip_bucket("192.0.2.1") == "192.0.2.1"
    assert ip_bucket("not an address") == "unknown"


def test_ip_limit_zero_turns_it_off(settings, db):
    settings.IP_RATE_LIMIT_PER_MINUTE = 0
    client = Client(REMOTE_ADDR="198.51.100.11")
    assert all(client.get("/api/v1/models").status_code == 200 for _ in range(5))


# --- Log-in throttling (allauth) --------------------------------------------------------


def test_a_burst_of_failed_log_ins_from_one_address_is_throttled(owner, teammate, outsider):
    client = Client(REMOTE_ADDR="198.51.100.12")
    victims = [teammate.email, outsider.email, "nobody@example.com"]
    for attempt in range(5):
        email = victims[attempt % len(victims)]
        response = client.post("/accounts/login/", {"login": email, "password": "wrong"})
        assert "Too many failed login attempts" not in response.content.decode()
    # Even the right password of an account not yet guessed at is refused from here...
    response = client.post("/accounts/login/", {"login": owner.email, "password": PASSWORD})
    assert "Too many failed login attempts" in response.content.decode()
    assert client.get("/dashboard/").status_code == 302
    # ...but not from elsewhere.
    elsewhere = Client(REMOTE_ADDR="198.51.100.13")
    response = elsewhere.post("/accounts/login/", {"login": owner.email, "password": PASSWORD})
    assert response.status_code == 302


def fail_log_ins(client: Client, emails: list[str], forwarded: list[str]) -> None:
    for email, hop in zip(emails, forwarded, strict=True):
        response = client.post(
            "/accounts/login/",
            {"login": email, "password": "wrong"},
            headers={"X-Forwarded-For": hop},
        )
        assert "Too many failed login attempts" not in response.content.decode()


def test_a_client_rotating_forwarded_for_is_still_throttled_without_trusted_proxies(
    owner, teammate, outsider, settings
):
    settings.TRUSTED_PROXY_COUNT = 0
    client = Client(REMOTE_ADDR="198.51.100.14")
    victims = [teammate.email, outsider.email, "nobody@example.com"] * 2
    fail_log_ins(client, victims[:5], [f"10.9.0.{n}" for n in range(5)])
    response = client.post(
        "/accounts/login/",
        {"login": owner.email, "password": PASSWORD},
        headers={"X-Forwarded-For": "10.9.0.99"},
    )
    assert "Too many failed login attempts" in response.content.decode()


def test_behind_a_trusted_proxy_log_ins_are_throttled_per_forwarded_client(
    owner, teammate, outsider, settings
):
    # One setting says a proxy is there, for the IP limit and the log-in throttle alike.
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = Client(REMOTE_ADDR="10.0.0.1")
    victims = [teammate.email, outsider.email, "nobody@example.com"] * 2
    # The attacker rotates what it prepends; our proxy's hop is the address that counts.
    fail_log_ins(proxy, victims[:5], [f"1.1.1.{n}, 203.0.113.20" for n in range(5)])
    attacker = proxy.post(
        "/accounts/login/",
        {"login": owner.email, "password": PASSWORD},
        headers={"X-Forwarded-For": "9.9.9.9, 203.0.113.20"},
    )
    assert "Too many failed login attempts" in attacker.content.decode()
    # Everyone else behind the same proxy still logs in.
    other = Client(REMOTE_ADDR="10.0.0.1").post(
        "/accounts/login/",
        {"login": owner.email, "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.21"},
    )
    assert other.status_code == 302


def test_a_forwarded_for_shorter_than_the_proxy_chain_is_no_server_error(owner, settings):
    settings.TRUSTED_PROXY_COUNT = 2
    response = Client(REMOTE_ADDR="10.0.0.1").post(
        "/accounts/login/",
        {"login": owner.email, "password": "wrong"},
        headers={"X-Forwarded-For": "203.0.113.22"},
    )
    assert response.status_code == 200
