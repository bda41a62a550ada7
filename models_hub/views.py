"""Catalog pages: list, model page, and the publishing pages of an org's own listings."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing import stripe_client
from billing.account import listing_offer
from billing.viewer_price import price_for_viewer
from inference.catalog_stats import NO_STATS, ListingStats, catalog_stats
from models_hub import catalog, services, versions
from models_hub.forms import CatalogFilterForm, DeprecateVersionForm, EditListingForm, ListingForm
from models_hub.models import ListingStatus, ModelListing, ModelVersion, Tag
from models_hub.playground import playground_for
from models_hub.snippets import snippets_for
from portal import strict_json
from portal.errors import InvalidInput, NotAllowed, NotFound, PortalError
from portal.models import Organization, Role
from portal.views import org_member_required, run_service

PAGE_SIZE = 12


def request_org(request: HttpRequest) -> Organization | None:
    """The org the visitor works in, or None for anonymous visitors and users without one."""
    if not request.user.is_authenticated:
        return None
    return request.org or None


@dataclass(frozen=True)
class Card:
    """One catalog card: the listing, its price in short and its public figures."""

    listing: ModelListing
    price_lines: list[str]
    stats: ListingStats | None  # None until the stats task has run: the card shows none


def catalog_cards(listings: list[ModelListing]) -> list[Card]:
    """The page's cards in a fixed number of queries: prices for the page at once, run
    figures from the cache the stats task fills (no query at all)."""
    pricing = catalog.pricing_for_many(listings)
    stats = catalog_stats()
    return [
        Card(
            listing,
            catalog.price_lines(pricing[listing.pk]),
            None if stats is None else stats.get(listing.pk, NO_STATS),
        )
        for listing in listings
    ]


def model_list(request: HttpRequest) -> HttpResponse:
    form = CatalogFilterForm(request.GET)
    filters = form.filters()
    listings = catalog.search_catalog(request_org(request), **filters)
    page = Paginator(listings, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "cards": catalog_cards(list(page.object_list)),
        "filters": filters,
        "query": query.urlencode(),
        "tags": Tag.objects.filter(listings__in=ModelListing.objects.catalog(request_org(request)))
        .distinct()
        .order_by("name"),
    }
    return render(request, "models_hub/list.html", context)


def schema_fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows describing each input field, for the model page's input table."""
    required = set(schema.get("required", []))
    rows = []
    for name, spec in schema.get("properties", {}).items():
        kind = spec.get("type") or " or ".join(
            option.get("type", "?") for option in spec.get("anyOf", [])
        )
        limits = {
            key: spec[key]
            for key in ("minimum", "maximum", "minLength", "maxItems", "enum")
            if key in spec
        }
        rows.append(
            {
                "name": name,
                "type": kind,
                "required": name in required,
                "description": spec.get("description", ""),
                "limits": ", ".join(f"{key}: {value}" for key, value in limits.items()),
            }
        )
    # jsonb does not keep the schema's key order: required fields first, then by name.
    return sorted(rows, key=lambda row: (not row["required"], row["name"]))


def can_manage(request: HttpRequest, listing: ModelListing) -> bool:
    org = request_org(request)
    return bool(org and listing.org_id == org.pk and request.membership.has_role(Role.ADMIN))


def is_reviewer(request: HttpRequest) -> bool:
    """Staff who review listings in admin (admin's "Preview model page" link)."""
    user = request.user
    return bool(
        user.is_active and user.is_staff and user.has_perm("models_hub.change_modellisting")
    )


def model_detail(request: HttpRequest, slug: str) -> HttpResponse:
    org = request_org(request)
    # `?preview=1` from anyone but a reviewer is ignored: the page (or the 404) they get
    # is the one without it.
    preview = request.GET.get("preview") == "1" and is_reviewer(request)
    try:
        listing = (
            catalog.get_listing_for_review(slug) if preview else catalog.get_listing(org, slug)
        )
    except NotFound as exc:
        raise Http404(exc.message) from exc
    pricing = catalog.pricing_for(listing)
    playground = playground_for(org, listing, request.GET.get("from"))
    context = {
        "listing": listing,
        "playground": playground,
        "schema_fields": schema_fields(listing.input_schema),
        "schema_json": json.dumps(listing.input_schema, indent=2),
        "example_json": json.dumps(listing.example_input, indent=2),
        "snippets": snippets_for(listing, request.build_absolute_uri("/")),
        # The playground's API tab: the call its form would make as the page opens.
        "playground_snippets": [
            asdict(snippet)
            for snippet in snippets_for(listing, request.build_absolute_uri("/"), playground.input)
        ],
        "pricing": pricing,
        "price_lines": catalog.price_lines(pricing),
        # The price on the viewer's own plan (templates/billing/_price_for_viewer.html).
        "viewer_price": price_for_viewer(org, listing),
        "can_manage": can_manage(request, listing),
        "offer": listing_offer(org, listing),
        # Subscribing is the owner's, as for site plans (the checkout view checks it too).
        "can_subscribe": bool(org and request.membership.has_role(Role.OWNER)),
        "billing_configured": stripe_client.is_configured(),
        "preview": preview and listing.status != ListingStatus.PUBLISHED,
    }
    return render(request, "models_hub/detail.html", context)


@org_member_required()
@require_POST
def playground_snippets(request: HttpRequest, slug: str) -> JsonResponse:
    """The code for the call the playground just ran (its API tab): the page's snippets
    for the posted `{"input": {...}}`, with this site's base URL. Formats, runs nothing."""
    try:
        listing = catalog.get_listing(request.org, slug)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    try:
        body = strict_json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        body = None
    model_input = body.get("input") if isinstance(body, dict) else None
    if not isinstance(model_input, dict):
        return JsonResponse({"error": "Send a JSON object with an input object."}, status=400)
    snippets = snippets_for(listing, request.build_absolute_uri("/"), model_input)
    return JsonResponse({"snippets": [asdict(snippet) for snippet in snippets]})


# --- Publishing (an org's own listings) ------------------------------------------------


@org_member_required(Role.ADMIN)
def publish_list(request: HttpRequest) -> HttpResponse:
    listings = ModelListing.objects.filter(org=request.org).prefetch_related("tags", "versions")
    return render(request, "models_hub/publish_list.html", {"listings": listings})


def _save_form(request: HttpRequest, form: ListingForm, save: Callable[[], ModelListing]) -> bool:
    """Runs the service; a field error it reports is shown next to that field."""
    try:
        save()
    except InvalidInput as exc:
        field = exc.param if exc.param in form.fields else None
        form.add_error(field, exc.message)
        return False
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except PortalError as exc:
        form.add_error(None, exc.message)
        return False
    return True


@org_member_required(Role.ADMIN)
def publish_create(request: HttpRequest) -> HttpResponse:
    form = ListingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data

        def save() -> ModelListing:
            return services.create_listing(
                request.org, request.user, data["slug"], data, form.tag_names()
            )

        if _save_form(request, form, save):
            messages.success(request, "Draft saved. Submit it for review when it is ready.")
            return redirect("model_detail", slug=data["slug"])
    return render(request, "models_hub/publish_form.html", {"form": form, "listing": None})


def _own_listing(request: HttpRequest, slug: str) -> ModelListing:
    listing = ModelListing.objects.filter(org=request.org, slug=slug).first()
    if listing is None:
        raise Http404("Model not found.")
    return listing


@org_member_required(Role.ADMIN)
def publish_edit(request: HttpRequest, slug: str) -> HttpResponse:
    listing = _own_listing(request, slug)
    initial = {
        "name": listing.name,
        "slug": listing.slug,
        "summary": listing.summary,
        "description": listing.description,
        "task": listing.task,
        "source": listing.source,
        "visibility": listing.visibility,
        "tags": ", ".join(tag.name for tag in listing.tags.all()),
    }
    form = EditListingForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():

        def save() -> ModelListing:
            return services.update_listing(
                request.org, request.user, slug, form.cleaned_data, form.tag_names()
            )

        if _save_form(request, form, save):
            messages.success(request, "Draft saved.")
            return redirect("model_detail", slug=slug)
    return render(request, "models_hub/publish_form.html", {"form": form, "listing": listing})


@org_member_required(Role.ADMIN)
@require_POST
def publish_submit(request: HttpRequest, slug: str) -> HttpResponse:
    run_service(
        request,
        lambda: services.submit_for_review(request.org, request.user, slug),
        "Submitted for review. Our staff will publish it or get back to you.",
    )
    return redirect("publish_list")


@org_member_required(Role.ADMIN)
@require_POST
def publish_withdraw(request: HttpRequest, slug: str) -> HttpResponse:
    run_service(
        request,
        lambda: services.withdraw_submission(request.org, request.user, slug),
        "Withdrawn from review; it is a draft again.",
    )
    return redirect("publish_list")


@org_member_required(Role.ADMIN)
@require_POST
def publish_deprecate_version(request: HttpRequest, slug: str, version: str) -> HttpResponse:
    found = (
        ModelVersion.objects.filter(listing__org=request.org, listing__slug=slug, pk=version)
        .select_related("listing__org")
        .first()
    )
    if found is None:
        raise Http404("Version not found.")
    form = DeprecateVersionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose when the version retires (7 days ahead at least).")
        return redirect("publish_list")
    run_service(
        request,
        lambda: versions.deprecate_version(
            found, form.cleaned_data["retires_at"], request.user, reason=form.cleaned_data["reason"]
        ),
        f"Version {found.id} is deprecated; the orgs that called it lately are told.",
    )
    return redirect("publish_list")
