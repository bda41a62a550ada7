"""Security sweep over every URL pattern the project serves (issue #8).

Every pattern must be classified in ENDPOINTS (or fall under a third-party group with its
own auth: Django admin, allauth); a new URL that is not fails
`test_every_url_pattern_is_classified`, so it cannot ship unswept. Then, for each one:

- without logging in, only the allow-listed public endpoints answer; pages redirect to
  log-in, the API answers 401 with API.md's error body;
- an outsider (owner of another org) gets, for this org's objects, exactly what a
  missing id gets: 404, same body, on every method; nothing is changed;
- a plain member gets 403 on admin-only pages, the owner reaches every page;
- every browser POST without a CSRF token is refused (403), logged in or not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from urllib.parse import urlencode

import pytest
from django.core.files.base import ContentFile
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from billing.models import ListingPlan, Plan
from inference import files
from inference.models import Prediction, Status, StoredFile
from models_hub.models import ListingStatus, ModelListing, Visibility
from models_hub.versions import record_version
from portal import services
from portal.middleware import API_PREFIXES
from portal.models import ApiToken, Invitation, Membership, Organization, Role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_ip_limit(settings):
    """The sweep sends hundreds of requests from one address; that limit has its own tests."""
    settings.IP_RATE_LIMIT_PER_MINUTE = 0


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
LOGIN_PATH = "/accounts/login/"


class Access(StrEnum):
    PUBLIC = "public"  # anyone: the allow-list
    PAGE = "page"  # browser page for a signed-in user; anonymous -> 302 to log-in
    API = "api"  # bearer token or session; anonymous -> 401 error body
    WEBHOOK = "webhook"  # public, authenticated by a signature, CSRF-exempt
    OPERATOR = "operator"  # staff session or an operator's bearer secret; else 403


@dataclass(frozen=True)
class Endpoint:
    access: Access
    methods: tuple[str, ...] = ("GET",)
    # The least org role a PAGE (or the API with the session) needs (None: any signed-in
    # user).
    role: str | None = Role.MEMBER
    # Path parameter -> the kind of object that fills it (see `objects`).
    params: Mapping[str, str] = field(default_factory=dict)
    # What the owner's GET answers (anyone's, for a public endpoint): a page, or a redirect
    # where that is the page's job.
    owner_status: int = 200
    # What a signed-out visitor's GET of a public endpoint answers, where it differs.
    anonymous_status: int | None = None

    @property
    def tenant_params(self) -> list[str]:
        return [name for name, kind in self.params.items() if kind in TENANT_KINDS]


PUBLIC = Endpoint(Access.PUBLIC, role=None)
MEMBER_PAGE = Endpoint(Access.PAGE)
ADMIN_PAGE = Endpoint(Access.PAGE, role=Role.ADMIN)
ADMIN_POST = Endpoint(Access.PAGE, ("POST",), role=Role.ADMIN)
API_GET = Endpoint(Access.API, role=None)
API_POST = Endpoint(Access.API, ("POST",), role=None)

# Objects that belong to an org: another org must get 404 for them.
TENANT_KINDS = {
    "membership", "invitation", "token", "listing", "version", "prediction", "listing_plan",
    "org", "file",
}  # fmt: skip

# Keyed by the route as Django joins it (ResolverMatch.route).
ENDPOINTS: dict[str, Endpoint] = {
    # The landing page for visitors; signed in, it sends the user to their dashboard.
    "": Endpoint(Access.PUBLIC, role=None, owner_status=302, anonymous_status=200),
    # A redirect to the static SVG icon, for browsers that ask without a <link>.
    "favicon.ico": Endpoint(Access.PUBLIC, role=None, owner_status=302),
    "dashboard/": MEMBER_PAGE,
    "orgs/": Endpoint(Access.PAGE, ("GET", "POST"), role=None),
    "orgs/switch/": Endpoint(Access.PAGE, ("POST",), role=None),
    # Owners and admins of the org the URL names; another org's is a 404 like a missing one.
    "orgs/<slug:slug>/rename/": Endpoint(
        Access.PAGE, ("POST",), role=Role.ADMIN, params={"slug": "org"}
    ),
    "org/delete/": Endpoint(Access.PAGE, ("POST",), role=Role.OWNER),
    "org/members/": MEMBER_PAGE,
    "org/retention/": ADMIN_POST,
    "org/settings/": ADMIN_PAGE,
    "org/settings/webhook-secret/rotate/": ADMIN_POST,
    # Members may reach these (to leave, say); the service checks the finer rules.
    "org/members/<int:membership_id>/role/": Endpoint(
        Access.PAGE, ("POST",), params={"membership_id": "membership"}
    ),
    "org/members/<int:membership_id>/remove/": Endpoint(
        Access.PAGE, ("POST",), params={"membership_id": "membership"}
    ),
    "org/invitations/": ADMIN_POST,
    "org/invitations/<int:invitation_id>/revoke/": Endpoint(
        Access.PAGE, ("POST",), role=Role.ADMIN, params={"invitation_id": "invitation"}
    ),
    # The signed key is the credential: whoever holds the link may see and accept it.
    "invitations/<str:key>/": Endpoint(
        Access.PUBLIC, ("GET", "POST"), role=None, params={"key": "invitation_key"}
    ),
    "org/tokens/": Endpoint(Access.PAGE, ("GET", "POST"), role=Role.ADMIN),
    # GET: the confirmation page; POST: the revocation.
    "org/tokens/<int:token_id>/revoke/": Endpoint(
        Access.PAGE, ("GET", "POST"), role=Role.ADMIN, params={"token_id": "token"}
    ),
    "org/audit/": ADMIN_PAGE,
    "models/": PUBLIC,
    "models/publish/": ADMIN_PAGE,
    "models/publish/new/": Endpoint(Access.PAGE, ("GET", "POST"), role=Role.ADMIN),
    "models/publish/<slug:slug>/edit/": Endpoint(
        Access.PAGE, ("GET", "POST"), role=Role.ADMIN, params={"slug": "listing"}
    ),
    "models/publish/<slug:slug>/submit/": Endpoint(
        Access.PAGE, ("POST",), role=Role.ADMIN, params={"slug": "listing"}
    ),
    "models/publish/<slug:slug>/withdraw/": Endpoint(
        Access.PAGE, ("POST",), role=Role.ADMIN, params={"slug": "listing"}
    ),
    "models/publish/<slug:slug>/versions/<str:version>/deprecate/": Endpoint(
        Access.PAGE, ("POST",), role=Role.ADMIN, params={"slug": "listing", "version": "version"}
    ),
    # Public for public listings; an org's private listing is 404 to everyone else.
    "models/<slug:slug>/": Endpoint(Access.PUBLIC, role=None, params={"slug": "listing"}),
    # The playground's API tab: the code for a posted input (it formats, it runs nothing).
    "models/<slug:slug>/snippets/": Endpoint(Access.PAGE, ("POST",), params={"slug": "listing"}),
    "pricing/": PUBLIC,
    "billing/": MEMBER_PAGE,
    "billing/usage/": MEMBER_PAGE,
    "billing/usage.csv": MEMBER_PAGE,
    "billing/checkout/<slug:plan>/": Endpoint(Access.PAGE, ("POST",), params={"plan": "plan"}),
    # A plan of a listing the org cannot call is a 404 like a missing one; owners only.
    "billing/checkout/listing/<int:plan_id>/": Endpoint(
        Access.PAGE, ("POST",), role=Role.OWNER, params={"plan_id": "listing_plan"}
    ),
    "billing/success/": MEMBER_PAGE,
    "billing/cancel/": MEMBER_PAGE,
    "billing/portal/": Endpoint(Access.PAGE, ("POST",)),
    # Owners only: the views check the role, members and admins get 403.
    "billing/credits/checkout/": Endpoint(Access.PAGE, ("POST",), role=Role.OWNER),
    "billing/credits/auto-top-up/": Endpoint(Access.PAGE, ("POST",), role=Role.OWNER),
    "billing/spend-cap/": Endpoint(Access.PAGE, ("POST",), role=Role.OWNER),
    "billing/tokens/<int:token_id>/spend-cap/": Endpoint(
        Access.PAGE, ("POST",), role=Role.OWNER, params={"token_id": "token"}
    ),
    "billing/stripe/webhook/": Endpoint(Access.WEBHOOK, ("POST",), role=None),
    "predictions/": MEMBER_PAGE,
    "predictions/<str:prediction_id>/": Endpoint(
        Access.PAGE, params={"prediction_id": "prediction"}
    ),
    # An image of the org's (a prediction's input) for its members' browsers (issue #17).
    "files/<str:file_id>/": Endpoint(Access.PAGE, params={"file_id": "file"}),
    # Revenue: tokens with `publisher`; with the session, owners and admins only.
    "api/v1/publisher/ledger": Endpoint(Access.API, role=Role.ADMIN),
    "api/v1/publisher/stats": Endpoint(Access.API, role=Role.ADMIN),
    # Members see the Connect status; the earnings and the CSV are for owners and admins,
    # onboarding for owners (the views check the role).
    "publisher/": MEMBER_PAGE,
    "publisher/ledger.csv": ADMIN_PAGE,
    "publisher/onboarding/": Endpoint(Access.PAGE, ("POST",), role=Role.OWNER),
    # Members read the listings and analytics (without money); owners and admins schedule
    # prices. Another org's listing is a 404 like a missing one.
    "publisher/listings/": MEMBER_PAGE,
    "publisher/listings/<slug:slug>/price/": Endpoint(
        Access.PAGE, ("POST",), role=Role.ADMIN, params={"slug": "listing"}
    ),
    "publisher/listings/<slug:slug>/plans/": Endpoint(
        Access.PAGE, ("POST",), role=Role.ADMIN, params={"slug": "listing"}
    ),
    "publisher/listings/<slug:slug>/plans/<int:plan_id>/retire/": Endpoint(
        Access.PAGE,
        ("POST",),
        role=Role.ADMIN,
        params={"slug": "listing", "plan_id": "listing_plan"},
    ),
    "publisher/analytics/": MEMBER_PAGE,
    "publisher/analytics.csv": MEMBER_PAGE,
    # Stripe sends an expired onboarding link here: a new link, by redirect.
    "publisher/onboarding/refresh/": Endpoint(Access.PAGE, role=Role.OWNER, owner_status=302),
    "api/v1/account": API_GET,
    "api/v1/usage": API_GET,
    # Tokens with `read`; with the session, owners and admins only (it is a secret).
    "api/v1/webhooks/default/secret": Endpoint(Access.API, role=Role.ADMIN),
    # Read like the secret; changed by owners and admins in the browser only (no token).
    "api/v1/webhooks/default": Endpoint(Access.API, ("GET", "PUT"), role=Role.ADMIN),
    "api/v1/models": PUBLIC,
    "api/v1/models/<slug:slug>": Endpoint(Access.PUBLIC, role=None, params={"slug": "listing"}),
    # As the model itself: public listings' versions are public, a private one's its org's.
    "api/v1/models/<slug:slug>/versions": Endpoint(
        Access.PUBLIC, role=None, params={"slug": "listing"}
    ),
    "api/v1/predictions/<str:prediction_id>/stream": Endpoint(
        Access.API, role=None, params={"prediction_id": "prediction"}
    ),
    "api/v1/predictions$": Endpoint(Access.API, ("GET", "POST"), role=None),
    # Images (issue #17): upload, then read or delete one of the org's.
    "api/v1/files$": API_POST,
    "api/v1/files/(?P<pk>[a-z0-9]+)$": Endpoint(
        Access.API, ("GET", "DELETE"), role=None, params={"pk": "file"}
    ),
    "api/v1/predictions/quote$": API_POST,
    "api/v1/predictions/(?P<pk>[a-z0-9]+)$": Endpoint(
        Access.API, role=None, params={"pk": "prediction"}
    ),
    "api/v1/predictions/(?P<pk>[a-z0-9]+)/cancel$": Endpoint(
        Access.API, ("POST",), role=None, params={"pk": "prediction"}
    ),
    "v1/models": API_GET,
    "v1/chat/completions": API_POST,
    "v1/completions": API_POST,
    "v1/embeddings": API_POST,
    "docs/quickstart/": PUBLIC,
    "api/schema/": PUBLIC,
    "api/docs/": PUBLIC,
    "api/redoc/": PUBLIC,
    "healthz": PUBLIC,
    "readyz": PUBLIC,
    # Open under DEBUG only (API.md); the sweep runs with DEBUG off, as production does.
    "metrics": Endpoint(Access.OPERATOR, role=None),
}

# Third-party URL groups with their own access rules, swept as groups: every admin view
# needs a staff session (log-in and log-out pages aside); allauth's pages are the public
# sign-up / log-in flows, or send a signed-out visitor to log in.
ADMIN_PREFIX = "admin/"
ADMIN_PUBLIC = {"admin/login/", "admin/logout/"}
ACCOUNTS_PREFIX = "accounts/"
# POST without a CSRF token is accepted only here (authenticated by Stripe's signature).
CSRF_EXEMPT = {"billing/stripe/webhook/"}


# --- Walking the URLconf ---------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    route: str  # as ResolverMatch.route spells it
    params: tuple[str, ...]


def join_route(prefix: str, route: str) -> str:
    """Django's own joining (URLResolver._join_route): a sub-pattern's `^` is dropped."""
    return prefix + route.removeprefix("^")


def walk(patterns: list, prefix: str = "") -> Iterator[Route]:
    for pattern in patterns:
        route = join_route(prefix, str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield Route(route, tuple(pattern.pattern.regex.groupindex))


def all_routes() -> list[Route]:
    return list(walk(get_resolver().url_patterns))


def _fill_regex(route: str, values: Mapping[str, str]) -> str:
    """Replaces each `(?P<name>...)` group (nested parentheses allowed) with its value."""
    out, index = [], 0
    for match in re.finditer(r"\(\?P<(\w+)>", route):
        if match.start() < index:
            continue
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(route[end], 0)
            end += 1
        out.append(route[index : match.start()] + values[match.group(1)])
        index = end
    return "".join(out) + route[index:]


def build_url(route: Route, values: Mapping[str, str]) -> str:
    path = _fill_regex(route.route, values).replace("^", "").replace("$", "")
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], path)
    url = "/" + path
    # The URL must come back to this very pattern, or the sweep would test another view.
    assert resolve(url).route == route.route, (url, resolve(url).route, route.route)
    return url


def dummy_values(route: Route) -> dict[str, str]:
    """Values for third-party patterns: an existing admin app, else "1" (any id)."""
    return {name: "portal" if name == "app_label" else "1" for name in route.params}


# --- The org's objects ----------------------------------------------------------------


@dataclass
class Objects:
    org: Organization
    real: dict[str, str]
    missing: dict[str, str]
    prediction: Prediction
    token: ApiToken
    invitation: Invitation
    membership: Membership
    listing: ModelListing
    listing_plan: ListingPlan

    def values(self, endpoint: Endpoint, *, missing: bool = False) -> dict[str, str]:
        source = self.missing if missing else self.real
        return {name: source[kind] for name, kind in endpoint.params.items()}


@pytest.fixture
def objects(org, owner, teammate, echo_listing, files_in_tmp) -> Objects:
    """One object of each kind in `org`, and an id of the same shape that exists nowhere."""
    listing = ModelListing.objects.create(
        slug="acme-private-model",
        name="Acme private model",
        summary="Acme's own.",
        org=org,
        task=echo_listing.task,
        source="builtin:echo",
        status=ListingStatus.PUBLISHED,
        visibility=Visibility.PRIVATE,
        input_schema=echo_listing.input_schema,
    )
    version = record_version(listing)
    prediction = Prediction.objects.create(
        org=org, user=owner, model=listing, input={"prompt": "secret"}, status=Status.PROCESSING
    )
    token = services.issue_token(org, owner, "acme-token").token
    # Bytes (in this test's own folder) for the page that serves them; the API reads rows.
    stored_name = files.storage().save(f"{org.pk}/sweep.png", ContentFile(b"x"))
    stored_file = StoredFile.objects.create(
        org=org, owner=owner, content_type="image/png", size=1, width=1, height=1,
        sha256="0" * 64, storage_name=stored_name,
        expires_at=timezone.now() + timedelta(days=1),
    )  # fmt: skip
    issued = services.invite_member(org, owner, "newcomer@example.com")
    membership = Membership.objects.get(org=org, user=teammate)
    plan = Plan.objects.create(slug="sweep-plan", name="Sweep plan")
    listing_plan = ListingPlan.objects.create(
        listing=listing, name="Sweep listing plan", monthly_price=9, included_usage=5
    )
    real = {
        "prediction": prediction.id,
        "token": str(token.pk),
        "invitation": str(issued.invitation.pk),
        "invitation_key": issued.signed_key,
        "membership": str(membership.pk),
        "listing": listing.slug,
        "version": version.id,
        "plan": plan.slug,
        "listing_plan": str(listing_plan.pk),
        "org": org.slug,
        "file": stored_file.id,
    }
    missing = {
        "prediction": "x" * len(prediction.id),
        "token": "987654321",
        "invitation": "987654321",
        "invitation_key": "not-a-signed-key",
        "membership": "987654321",
        "listing": "no-such-model-anywhere",
        "version": "0" * len(version.id),
        "plan": "no-such-plan",
        "listing_plan": "987654321",
        "org": "no-such-org-anywhere",
        "file": "x" * len(stored_file.id),
    }
    return Objects(
        org, real, missing, prediction, token, issued.invitation, membership, listing, listing_plan
    )


def classified() -> Iterator[tuple[Route, Endpoint]]:
    for route in all_routes():
        if route.route in ENDPOINTS:
            yield route, ENDPOINTS[route.route]


# A plausible form for every browser POST, so that a view reaches its object lookup
# instead of stopping at "field required" (role: what member_role would grant).
FORM_BODY = urlencode({"role": Role.ADMIN, "confirm": "x", "name": "Sweep", "email": "a@b.c"})


def request(client: Client, method: str, url: str) -> HttpResponse:
    # The test client closes the response itself; streams (SSE) are never read here.
    if method != "GET" and not url.startswith(API_PREFIXES):
        return client.generic(method, url, FORM_BODY, "application/x-www-form-urlencoded")
    return client.generic(method, url, data="{}", content_type="application/json")


def normalized(response: HttpResponse, *ids: str) -> str:
    """The body without what legitimately differs between two renders of the same page."""
    if response.streaming:
        return "<stream>"
    text = response.content.decode(errors="replace")
    text = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "csrf", text)
    # Flash messages belong to an earlier request in the session, not to this one.
    text = re.sub(r'<ul class="messages".*?</ul>', "", text, flags=re.DOTALL)
    for value in ids:
        text = text.replace(value, "<ID>")
    return text


# --- Classification -------------------------------------------------------------------


def test_every_url_pattern_is_classified():
    routes = [route.route for route in all_routes()]
    ours = [r for r in routes if not r.startswith((ADMIN_PREFIX, ACCOUNTS_PREFIX))]
    unclassified = sorted(set(ours) - set(ENDPOINTS))
    assert not unclassified, f"Classify these new URL patterns in ENDPOINTS: {unclassified}"
    stale = sorted(set(ENDPOINTS) - set(ours))
    assert not stale, f"ENDPOINTS lists patterns that no longer exist: {stale}"
    assert len(ours) == len(set(ours)), "one route string, two patterns"
    # The groups exist (a renamed prefix would silently skip them).
    assert sum(r.startswith(ADMIN_PREFIX) for r in routes) > 10
    assert sum(r.startswith(ACCOUNTS_PREFIX) for r in routes) > 5


def test_every_api_operation_is_a_classified_endpoint_and_method():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    seen = 0
    for path, operations in schema["paths"].items():
        url = re.sub(r"\{\w+\}", "abc123", path)
        endpoint = ENDPOINTS.get(resolve(url).route)
        assert endpoint is not None, f"{path} is not classified"
        for method in operations:
            if method.upper() in METHODS:
                seen += 1
                assert method.upper() in endpoint.methods, f"{method.upper()} {path}"
    assert seen >= 12


# --- Anonymous ------------------------------------------------------------------------


def _anonymous_failures(client: Client, objects: Objects) -> Iterator[str]:
    for route, endpoint in classified():
        url = build_url(route, objects.values(endpoint))
        if endpoint.access is Access.PUBLIC:
            if "GET" in endpoint.methods and not endpoint.tenant_params:
                status = request(client, "GET", url).status_code
                if status != (endpoint.anonymous_status or endpoint.owner_status):
                    yield f"GET {url} (public) -> {status}"
            continue
        for method in METHODS:
            response = request(client, method, url)
            problem = _anonymous_problem(endpoint, method, response)
            if problem:
                yield f"{method} {url} -> {response.status_code}: {problem}"


def _anonymous_problem(endpoint: Endpoint, method: str, response: HttpResponse) -> str | None:
    status = response.status_code
    if endpoint.access is Access.PAGE:
        if status == 302 and response["Location"].startswith(LOGIN_PATH):
            return None
        return "a page must send a signed-out visitor to log in"
    if endpoint.access is Access.API:
        if status == 405 and method not in endpoint.methods:
            return None  # the method check may come first: it reveals nothing
        if status == 401 and response.json()["error"]["type"] == "authentication_error":
            return None
        return "the API must answer 401 with the error body"
    if endpoint.access is Access.WEBHOOK and status < 400:
        return "an unsigned webhook must be refused"
    if endpoint.access is Access.OPERATOR and status not in (403, 405):
        return "operator endpoints are refused without their credential"
    return None


def test_anonymous_reaches_only_the_public_allow_list(objects):
    failures = list(_anonymous_failures(Client(), objects))
    assert not failures, "\n".join(failures)


def test_private_listings_are_404_like_missing_ones_for_anonymous_and_outsiders(
    objects, outsider, outsider_org, client_for, token_for, api_client
):
    clients = {
        "anonymous": Client(),
        "outsider session": client_for(outsider, outsider_org),
        "outsider token": api_client(token_for(outsider_org)),
    }
    for path in ("/models/{}/", "/api/v1/models/{}"):
        for who, client in clients.items():
            hidden = client.get(path.format(objects.listing.slug))
            missing = client.get(path.format(objects.missing["listing"]))
            assert hidden.status_code == missing.status_code == 404, (who, path)
            ids = (objects.listing.slug, objects.missing["listing"])
            assert normalized(hidden, *ids) == normalized(missing, *ids), (who, path)


def test_third_party_groups_keep_their_own_gates(owner, client_for):
    """Admin: staff only, for signed-out visitors and for a signed-in non-staff owner alike.
    allauth: its pages answer without a server error."""
    clients = {"anonymous": Client(), "non-staff owner": client_for(owner)}
    failures = []
    for route in all_routes():
        url = build_url(route, dummy_values(route))
        if route.route.startswith(ACCOUNTS_PREFIX):
            status = request(clients["anonymous"], "GET", url).status_code
            if status >= 500:
                failures.append(f"GET {url} -> {status}")
        if not route.route.startswith(ADMIN_PREFIX) or route.route in ADMIN_PUBLIC:
            continue
        for who, client in clients.items():
            response = request(client, "GET", url)
            if response.status_code != 302 or not response["Location"].startswith("/admin/login/"):
                failures.append(f"{who}: GET {url} -> {response.status_code}")
    assert not failures, "\n".join(failures)


# --- Another org ----------------------------------------------------------------------


def _outsider_failures(
    clients: Mapping[Access, Client],
    objects: Objects,
    routes: list[tuple[Route, Endpoint]] | None = None,
) -> Iterator[str]:
    for route, endpoint in classified() if routes is None else routes:
        if not endpoint.tenant_params:
            continue
        client = clients[endpoint.access]
        real_url = build_url(route, objects.values(endpoint))
        missing_url = build_url(route, objects.values(endpoint, missing=True))
        ids = (*objects.values(endpoint).values(), *objects.values(endpoint, missing=True).values())
        for method in sorted({"GET", *endpoint.methods}):
            real = request(client, method, real_url)
            missing = request(client, method, missing_url)
            if method in endpoint.methods and real.status_code != 404:
                yield f"{method} {real_url} -> {real.status_code}, expected 404"
            if real.status_code != missing.status_code:
                yield f"{method} {real_url} -> {real.status_code}, missing id {missing.status_code}"
            elif normalized(real, *ids) != normalized(missing, *ids):
                yield f"{method} {real_url}: body differs from a missing id's"


def test_outsider_gets_404_for_every_org_object_and_changes_nothing(
    objects, outsider, outsider_org, client_for, token_for, api_client
):
    session = client_for(outsider, outsider_org)  # the owner there: roles never stop it
    clients = {
        Access.PAGE: session,
        Access.PUBLIC: session,
        Access.API: api_client(token_for(outsider_org, scopes=["read", "predict"])),
    }
    failures = list(_outsider_failures(clients, objects))
    assert not failures, "\n".join(failures)
    # Same again with the session on the API (the browser's way in).
    failures = list(_outsider_failures({**clients, Access.API: session}, objects))
    assert not failures, "\n".join(failures)
    _assert_untouched(objects)


def test_the_outsider_check_flags_a_client_that_can_see_the_objects(
    objects, owner, client_for, token_for, api_client
):
    """The org's own owner, run through the same check, must be flagged on every route that
    takes an org object: the check above cannot pass by accident."""
    session = client_for(owner, objects.org)
    own = {
        Access.PAGE: session,
        Access.PUBLIC: session,
        Access.API: api_client(token_for(objects.org, scopes=["read"])),
    }
    # Read-only routes only: the owner's POSTs would really revoke and remove things.
    readable = [
        (route, endpoint)
        for route, endpoint in classified()
        if endpoint.tenant_params and "GET" in endpoint.methods
    ]
    flagged = "\n".join(_outsider_failures(own, objects, readable))
    for route, endpoint in readable:
        url = build_url(route, objects.values(endpoint))
        assert f"GET {url} " in flagged, url


def _assert_untouched(objects: Objects) -> None:
    objects.token.refresh_from_db()
    objects.invitation.refresh_from_db()
    objects.membership.refresh_from_db()
    objects.listing.refresh_from_db()
    objects.prediction.refresh_from_db()
    objects.listing_plan.refresh_from_db()
    assert objects.token.revoked_at is None
    assert objects.invitation.revoked_at is None and objects.invitation.accepted_at is None
    assert objects.membership.role == Role.MEMBER
    assert objects.listing.status == ListingStatus.PUBLISHED
    assert objects.listing.name == "Acme private model"
    assert not objects.listing.versions.filter(deprecated_at__isnull=False).exists()
    assert objects.prediction.status == Status.PROCESSING
    assert objects.prediction.cancel_requested_at is None
    assert objects.listing_plan.is_active
    assert objects.listing_plan.name == "Sweep listing plan"
    objects.org.refresh_from_db()
    assert objects.org.name == "Acme AI"
    assert ListingPlan.objects.filter(listing=objects.listing).count() == 1


# --- Roles in one's own org -----------------------------------------------------------


def test_members_read_but_get_403_on_admin_pages_and_the_owner_reaches_all(
    objects, owner, teammate, client_for, token_for, api_client
):
    member = client_for(teammate, objects.org)
    boss = client_for(owner, objects.org)
    boss_api = api_client(token_for(objects.org, scopes=["read", "predict", "publisher"]))
    failures = []
    for route, endpoint in classified():
        url = build_url(route, objects.values(endpoint))
        elevated = endpoint.role in (Role.ADMIN, Role.OWNER)
        if endpoint.access in (Access.PAGE, Access.API) and elevated:
            for method in endpoint.methods:
                status = request(member, method, url).status_code
                if status != 403:
                    failures.append(f"member: {method} {url} -> {status}, expected 403")
        elif endpoint.access in (Access.PAGE, Access.API) and "GET" in endpoint.methods:
            # A member reads the org's pages, and its API with the browser session (the
            # OpenAI-compatible /v1 layer takes bearer tokens only).
            status = request(member, "GET", url).status_code
            expected = 401 if url.startswith("/v1/") else 200
            if status != expected:
                failures.append(f"member: GET {url} -> {status}, expected {expected}")
        if "GET" in endpoint.methods and endpoint.access not in (Access.WEBHOOK, Access.OPERATOR):
            # Also proves the sweep's ids are real: the outsider's 404s are not vacuous.
            client = boss_api if endpoint.access is Access.API else boss
            status = request(client, "GET", url).status_code
            if status != endpoint.owner_status:
                failures.append(f"owner: GET {url} -> {status}")
    assert not failures, "\n".join(failures)


# --- CSRF -----------------------------------------------------------------------------


def csrf_failures(client: Client, objects: Objects) -> Iterator[str]:
    for route in all_routes():
        if route.route in CSRF_EXEMPT:
            continue
        endpoint = ENDPOINTS.get(route.route)
        values = objects.values(endpoint) if endpoint else dummy_values(route)
        url = build_url(route, values)
        status = request(client, "POST", url).status_code
        if endpoint and "POST" not in endpoint.methods and status == 405:
            continue  # a view that takes no POST at all has no state to change
        if endpoint and endpoint.access is Access.API:
            # The API: DRF refuses a session without CSRF (403); /v1 takes no session (401).
            if status not in (401, 403):
                yield f"POST {url} (API, session without CSRF) -> {status}"
        elif status != 403:
            yield f"POST {url} without a CSRF token -> {status}"


@pytest.mark.parametrize("signed_in", [True, False], ids=["signed-in", "signed-out"])
def test_every_browser_post_needs_a_csrf_token(objects, owner, signed_in):
    client = Client(enforce_csrf_checks=True)
    if signed_in:
        client.force_login(owner)
    failures = list(csrf_failures(client, objects))
    assert not failures, "\n".join(failures)


def test_the_csrf_check_is_what_refuses_them(objects, owner):
    """With the token, the same kind of POST goes through: the 403s above are CSRF's."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    client.get("/orgs/")
    token = client.cookies["csrftoken"].value
    form = {"org": objects.org.slug}
    response = client.post("/orgs/switch/", {**form, "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert client.post("/orgs/switch/", form).status_code == 403
