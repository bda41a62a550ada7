"""Publisher onboarding to Stripe Connect (issue #13): the Express account and its
onboarding links, `account.updated` webhooks, the publisher page by role, and paid prices
only for onboarded publishers.

The Stripe side is the recording fake (`fake_stripe`): assertions are on the exact form
each request carried. Webhooks are signed events posted to the real endpoint."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection

from billing import prices, publishers
from billing.models import ListingPrice, PublisherAccount, StripeEvent
from portal.errors import Conflict, NotAllowed
from portal.models import AuditLog, Role
from tests.billing.conftest import STRIPE_KEY, make_event
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

PAGE = "/publisher/"
ONBOARDING = "/publisher/onboarding/"
REFRESH = "/publisher/onboarding/refresh/"
ACCOUNTS = "/v1/accounts"
LINKS = "/v1/account_links"
NOW = int(time.time())


@pytest.fixture
def admin(org):
    user = make_user("admin@example.com")
    org.memberships.create(user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def stripe_accounts(fake_stripe):
    """Stripe answers account creation with `acct_1` and each link request with a URL."""
    fake_stripe.respond("POST", ACCOUNTS, 200, {"id": "acct_1", "object": "account"})
    fake_stripe.respond(
        "POST",
        LINKS,
        200,
        {"object": "account_link", "url": "https://connect.stripe.test/setup/acct_1"},
    )
    return fake_stripe


@pytest.fixture
def account(org) -> PublisherAccount:
    return PublisherAccount.objects.create(org=org, stripe_account_id="acct_known")


@pytest.fixture
def onboarded(account) -> PublisherAccount:
    account.charges_enabled = account.payouts_enabled = account.details_submitted = True
    account.save()
    return account


@pytest.fixture
def publisher_listing(echo, org):
    echo.org = org
    echo.save(update_fields=["org"])
    return echo


def account_obj(id_="acct_known", *, charges=True, payouts=True, details=True) -> dict:
    return {
        "id": id_,
        "object": "account",
        "type": "express",
        "charges_enabled": charges,
        "payouts_enabled": payouts,
        "details_submitted": details,
        "metadata": {},
    }


def outcome(response) -> str:
    assert response.status_code == 200, response.content
    return response.json()["outcome"]


def flags(account: PublisherAccount) -> tuple[bool, bool, bool]:
    account.refresh_from_db()
    return account.charges_enabled, account.payouts_enabled, account.details_submitted


def stripe_posts(fake_stripe) -> list:
    return [r for r in fake_stripe.requests if r.method != "GET"]


# --- stripe_client: the exact requests -------------------------------------------------


def test_first_onboarding_creates_the_account_then_a_link(stripe_accounts, owner, org, client_for):
    response = client_for(owner, org).post(ONBOARDING)
    assert response.status_code == 302
    assert response["Location"] == "https://connect.stripe.test/setup/acct_1"
    create, link = stripe_posts(stripe_accounts)
    assert (create.path, link.path) == (ACCOUNTS, LINKS)
    assert create.form == {
        "type": ["express"],
        "email": ["owner@example.com"],
        "metadata[org]": [str(org.pk)],
        "capabilities[transfers][requested]": ["true"],
    }
    assert create.headers["Idempotency-Key"] == f"connect-account-{org.pk}"
    assert create.headers["Authorization"] == f"Bearer {STRIPE_KEY}"
    assert link.form == {
        "account": ["acct_1"],
        "type": ["account_onboarding"],
        "refresh_url": ["http://testserver/publisher/onboarding/refresh/"],
        "return_url": ["http://testserver/publisher/?onboarding=done"],
    }
    account = PublisherAccount.objects.get(org=org)
    assert account.stripe_account_id == "acct_1" and not account.onboarded
    assert AuditLog.objects.filter(org=org, action="billing.publisher_account_created").exists()


def test_a_second_onboarding_reuses_the_account(stripe_accounts, owner, org, client_for):
    client_for(owner, org).post(ONBOARDING)
    response = client_for(owner, org).post(ONBOARDING)
    assert response.status_code == 302
    assert len(stripe_accounts.calls(ACCOUNTS)) == 1
    first, second = stripe_accounts.calls(LINKS)
    assert first.form["account"] == second.form["account"] == ["acct_1"]
    assert PublisherAccount.objects.filter(org=org).count() == 1


def test_an_expired_link_refreshes_to_a_new_one(stripe_accounts, owner, org, account, client_for):
    response = client_for(owner, org).get(REFRESH)
    assert response.status_code == 302
    assert response["Location"] == "https://connect.stripe.test/setup/acct_1"
    (link,) = stripe_posts(stripe_accounts)
    assert link.path == LINKS and link.form["account"] == ["acct_known"]


def test_stripe_down_is_a_message_and_no_account(fake_stripe, owner, org, client_for):
    fake_stripe.respond("POST", ACCOUNTS, 500, {"error": {"message": "down"}})
    response = client_for(owner, org).post(ONBOARDING, follow=True)
    assert response.status_code == 200
    assert b"did not answer" in response.content
    assert not PublisherAccount.objects.exists()


def test_without_stripe_key_there_is_no_button_and_nothing_is_sent(
    settings, fake_stripe, owner, org, client_for
):
    settings.STRIPE_SECRET_KEY = ""
    page = client_for(owner, org).get(PAGE).content.decode()
    assert "Payouts are not configured" in page and "Set up payouts" not in page
    response = client_for(owner, org).post(ONBOARDING, follow=True)
    assert b"Payouts are not configured" in response.content
    assert fake_stripe.requests == [] and not PublisherAccount.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_first_clicks_create_one_account(stripe_accounts, owner, org):
    barrier = threading.Barrier(2)
    urls: list[str] = []
    errors: list[BaseException] = []

    def click() -> None:
        try:
            barrier.wait(timeout=30)
            urls.append(publishers.start_onboarding(org, owner, "https://r", "https://b"))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert urls == ["https://connect.stripe.test/setup/acct_1"] * 2
    assert len(stripe_accounts.calls(ACCOUNTS)) == 1
    assert len(stripe_accounts.calls(LINKS)) == 2
    assert PublisherAccount.objects.get(org=org).stripe_account_id == "acct_1"


# --- account.updated --------------------------------------------------------------------


def test_account_updated_syncs_the_flags(post_event, account):
    event = make_event("account.updated", account_obj(charges=True, payouts=False, details=True))
    assert outcome(post_event(event)) == "processed"
    assert flags(account) == (True, False, True)
    assert account.last_event_at == event["created"] and not account.onboarded
    assert StripeEvent.objects.get(stripe_event_id=event["id"]).outcome == "applied: pending"
    later = make_event("account.updated", account_obj(), created=event["created"] + 1)
    post_event(later)
    assert flags(account) == (True, True, True) and account.onboarded


def test_a_replayed_event_is_a_no_op(post_event, account):
    event = make_event("account.updated", account_obj(), created=NOW)
    post_event(event)
    # Meanwhile the mirror changed (a newer state, say): the replay must not undo it.
    PublisherAccount.objects.filter(pk=account.pk).update(payouts_enabled=False)
    assert outcome(post_event(event)) == "duplicate"
    assert flags(account) == (True, False, True)
    assert StripeEvent.objects.filter(stripe_event_id=event["id"]).count() == 1


def test_an_older_event_after_a_newer_one_changes_nothing(post_event, account):
    newer = make_event("account.updated", account_obj(), created=NOW)
    older = make_event(
        "account.updated", account_obj(payouts=False, details=False), created=NOW - 60
    )
    post_event(newer)
    assert outcome(post_event(older)) == "processed"
    assert StripeEvent.objects.get(stripe_event_id=older["id"]).outcome.startswith("stale")
    assert flags(account) == (True, True, True)
    assert account.last_event_at == NOW


def test_an_unknown_account_is_answered_200_and_ignored(post_event, account):
    event = make_event("account.updated", account_obj("acct_someone_else"))
    assert outcome(post_event(event)) == "processed"
    assert StripeEvent.objects.get(stripe_event_id=event["id"]).outcome.startswith("ignored")
    assert flags(account) == (False, False, False)
    assert PublisherAccount.objects.count() == 1


def test_a_bad_signature_is_400_and_changes_nothing(post_event, account):
    event = make_event("account.updated", account_obj())
    response = post_event(event, secret="whsec_wrong")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_signature"
    assert flags(account) == (False, False, False)
    assert not StripeEvent.objects.exists()


def test_an_event_signed_by_the_connect_endpoints_secret_is_applied(settings, post_event, account):
    """Stripe signs connected accounts' events with the Connect endpoint's own secret."""
    settings.STRIPE_CONNECT_WEBHOOK_SECRET = "whsec_connect"
    event = make_event("account.updated", account_obj())
    assert post_event(event, secret="whsec_connect").status_code == 200
    assert flags(account) == (True, True, True)


# --- Roles and tenancy ----------------------------------------------------------------


def test_teammates_are_refused_and_nothing_is_created(
    stripe_accounts, teammate, admin, org, client_for
):
    for user in (teammate, admin):
        assert client_for(user, org).post(ONBOARDING).status_code == 403
        assert client_for(user, org).get(REFRESH).status_code == 403
    assert stripe_accounts.requests == []
    assert not PublisherAccount.objects.exists()


def test_the_service_refuses_a_member_even_if_called_directly(stripe_accounts, teammate, org):
    with pytest.raises(NotAllowed):
        publishers.start_onboarding(org, teammate, "https://r", "https://b")
    assert stripe_accounts.requests == []


def test_get_is_405_and_anonymous_goes_to_log_in(owner, org, client, client_for):
    assert client_for(owner, org).get(ONBOARDING).status_code == 405
    for path in (PAGE, ONBOARDING, REFRESH):
        response = client.post(path) if path == ONBOARDING else client.get(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_owner_sees_the_button_for_each_state(owner, org, client_for):
    page = client_for(owner, org).get(PAGE).content.decode()
    assert "Not started" in page and "Set up payouts" in page
    account = PublisherAccount.objects.create(org=org, stripe_account_id="acct_known")
    page = client_for(owner, org).get(PAGE).content.decode()
    assert "Details pending" in page and "Continue onboarding" in page
    account.charges_enabled = account.payouts_enabled = account.details_submitted = True
    account.save()
    page = client_for(owner, org).get(PAGE).content.decode()
    assert "Onboarded" in page and "<button" not in page.split("Payouts")[1]


def test_teammates_see_the_status_read_only(teammate, admin, org, onboarded, client_for):
    for user in (teammate, admin):
        response = client_for(user, org).get(PAGE)
        assert response.status_code == 200
        page = response.content.decode()
        assert "Onboarded" in page and "Only owners" in page
        assert ONBOARDING not in page


def test_back_from_stripe_says_stripe_is_checking(owner, org, account, client_for):
    page = client_for(owner, org).get(PAGE + "?onboarding=done").content.decode()
    assert "Stripe is checking your details" in page
    PublisherAccount.objects.filter(pk=account.pk).update(
        details_submitted=True, payouts_enabled=True
    )
    page = client_for(owner, org).get(PAGE + "?onboarding=done").content.decode()
    assert "Stripe is checking" not in page and "Onboarded" in page


def test_an_outsider_never_sees_or_changes_another_orgs_account(
    stripe_accounts, outsider, org, onboarded, client_for
):
    """The session names Acme, but the outsider is no member: they act on their own
    personal org, never on Acme."""
    page = client_for(outsider, org).get(PAGE).content.decode()
    assert "Not started" in page and "acct_known" not in page
    client_for(outsider, org).post(ONBOARDING)
    for call in stripe_accounts.calls(ACCOUNTS):
        assert call.form["metadata[org]"] != [str(org.pk)]
    for call in stripe_accounts.calls(LINKS):
        assert call.form["account"] != ["acct_known"]
    assert PublisherAccount.objects.get(org=org).stripe_account_id == "acct_known"
    with pytest.raises(Exception, match="Organization not found"):
        publishers.start_onboarding(org, outsider, "https://r", "https://b")


# --- Paid prices only for onboarded publishers ---------------------------------------------


def test_a_publisher_not_onboarded_cannot_set_a_paid_price(publisher_listing, owner, account):
    with pytest.raises(Conflict) as refused:
        prices.set_price(publisher_listing, actor=owner, per_request="0.01")
    assert refused.value.code == "publisher_not_onboarded"
    assert not ListingPrice.objects.filter(listing=publisher_listing).exists()


def test_a_publisher_without_any_account_cannot_either(publisher_listing, owner):
    with pytest.raises(Conflict):
        prices.set_price(publisher_listing, actor=owner, input_per_million="0.5")
    assert not ListingPrice.objects.exists()


def test_an_onboarded_publisher_can(publisher_listing, owner, onboarded):
    price = prices.set_price(publisher_listing, actor=owner, per_request="0.01")
    assert price.per_request == Decimal("0.01")


def test_a_zero_price_is_always_allowed(publisher_listing, owner):
    price = prices.set_price(publisher_listing, actor=owner, per_request="0", per_second="0")
    assert price.is_free


def test_parts_kept_from_a_paid_price_count_too(publisher_listing, owner, account):
    """An operator priced the listing; a partial change by the publisher would keep a paid
    part, so it is refused until the publisher is onboarded."""
    prices.set_price(publisher_listing, per_request="0.01")
    with pytest.raises(Conflict):
        prices.set_price(publisher_listing, actor=owner, input_per_million="0")
    assert ListingPrice.objects.filter(listing=publisher_listing).count() == 1


def test_operators_may_price_any_listing(publisher_listing, staff, account):
    assert prices.set_price(publisher_listing, per_request="0.02").per_request == Decimal("0.02")
    by_staff = prices.set_price(publisher_listing, actor=staff, per_request="0.03")
    assert by_staff.per_request == Decimal("0.03") and by_staff.created_by == staff


def test_first_party_listings_never_need_connect(echo, owner):
    assert echo.org is None
    assert prices.set_price(echo, actor=owner, per_request="0.01").per_request == Decimal("0.01")
