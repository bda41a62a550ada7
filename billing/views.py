"""Billing pages: pricing, the org's plan and invoices, usage, checkout and the portal,
and Stripe's webhook. Views stay thin: services decide and enforce roles."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from functools import partial

import stripe
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from billing import (
    caps,
    charts,
    credit_purchases,
    listing_subscriptions,
    plans,
    stripe_client,
    stripe_events,
    usage,
)
from billing.account import billing_summary
from billing.checkout import (
    ensure_customer,
    invoices_for,
    open_customer_portal,
    start_checkout,
    start_listing_checkout,
)
from billing.forms import AutoTopUpForm, BuyCreditsForm, SpendCapForm
from billing.models import BillingAccount, Plan
from portal.errors import InvalidInput, NotAllowed, NotFound, PortalError
from portal.middleware import error_body
from portal.models import Role
from portal.spreadsheets import formula_safe
from portal.views import org_member_required, run_service

logger = logging.getLogger(__name__)


def redirect_to_service(
    request: HttpRequest,
    action: Callable[[], str],
    fallback: str,
    respond: Callable[[str], HttpResponse] = redirect,
) -> HttpResponse:
    """Redirects (`respond`) to the URL a service returns; 404/403 propagate, other
    errors are shown on `fallback`."""
    try:
        return respond(action())
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        messages.error(request, exc.message)
        return respond(fallback)


def _is_owner(request: HttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return bool(request.user.is_authenticated and membership and membership.has_role(Role.OWNER))


def pricing(request: HttpRequest) -> HttpResponse:
    public = Plan.objects.filter(is_public=True).prefetch_related("included_models")
    current = None
    if request.user.is_authenticated and request.org:
        state = plans.plan_state(request.org)
        # A team workspace without a subscription is on no plan, not on the free one.
        current = None if state.subscription_required else state.plan
    context = {
        "plans": public,
        "current_plan": current,
        "can_subscribe": _is_owner(request),
        "billing_configured": stripe_client.is_configured(),
    }
    return render(request, "billing/pricing.html", context)


def _render_overview(
    request: HttpRequest,
    *,
    buy_form: BuyCreditsForm | None = None,
    top_up_form: AutoTopUpForm | None = None,
    status: int = 200,
) -> HttpResponse:
    org = request.org
    try:
        invoices = invoices_for(org)
        invoices_error = ""
    except stripe_client.StripeUnavailable as exc:
        invoices, invoices_error = [], exc.message
    # Read only: a page view creates no account row.
    account = BillingAccount.objects.filter(org=org).first() or BillingAccount(org=org)
    if top_up_form is None:
        top_up_form = AutoTopUpForm(
            initial={
                "amount": account.auto_top_up_amount,
                "threshold": account.auto_top_up_threshold,
            }
        )
    context = {
        "summary": billing_summary(org),
        "state": plans.plan_state(org),
        "invoices": invoices,
        "invoices_error": invoices_error,
        "is_owner": request.membership.has_role(Role.OWNER),
        "billing_configured": stripe_client.is_configured(),
        "account": account,
        "credit_entries": credit_purchases.recent_entries(org),
        "buy_form": buy_form or BuyCreditsForm(),
        "top_up_form": top_up_form,
        "currency": settings.PORTAL_CURRENCY.upper(),
        # Admins see the caps; owners change them.
        "sees_caps": request.membership.has_role(Role.ADMIN),
        "token_caps": caps.token_caps(org) if request.membership.has_role(Role.ADMIN) else [],
    }
    return render(request, "billing/overview.html", context, status=status)


@org_member_required()
def overview(request: HttpRequest) -> HttpResponse:
    return _render_overview(request)


def _see_other(url: str) -> HttpResponse:
    return HttpResponseRedirect(url, status=303)


@org_member_required(Role.OWNER)
@require_POST
def credits_checkout(request: HttpRequest) -> HttpResponse:
    """Buys credits: a Checkout Session in payment mode (owners only). A bad amount shows
    the billing page again with the form's error; nothing is sent to Stripe."""
    form = BuyCreditsForm(request.POST)
    if not form.is_valid():
        return _render_overview(request, buy_form=form, status=400)
    back = request.build_absolute_uri(reverse("billing_overview"))
    org, user = request.org, request.user
    try:
        url = credit_purchases.start_credits_checkout(
            org,
            user,
            form.cleaned_data["amount"],
            customer=lambda: ensure_customer(org, user),
            success_url=back + "?credits=paid",
            cancel_url=back,
        )
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        messages.error(request, exc.message)
        return _see_other(reverse("billing_overview"))
    return _see_other(url)


@org_member_required(Role.OWNER)
@require_POST
def credits_auto_top_up(request: HttpRequest) -> HttpResponse:
    form = AutoTopUpForm(request.POST)
    if not form.is_valid():
        return _render_overview(request, top_up_form=form, status=400)
    data = form.cleaned_data
    enabled = data["amount"] is not None

    def save() -> None:
        credit_purchases.set_auto_top_up(
            request.org, request.user, data["amount"], data["threshold"]
        )

    done = "Auto top-up is on." if enabled else "Auto top-up is off."
    run_service(request, save, done)
    return _see_other(reverse("billing_overview"))


def _cap_form(request: HttpRequest) -> SpendCapForm | None:
    """The posted cap, or None after showing the form's error as a message."""
    form = SpendCapForm(request.POST)
    if form.is_valid():
        return form
    errors = "; ".join(error for errors in form.errors.values() for error in errors)
    messages.error(request, f"Spend cap: {errors}")
    return None


def _cap_text(form: SpendCapForm) -> str:
    cap = form.cleaned_data["cap"]
    return "removed" if cap is None else f"set to {cap}"


@org_member_required(Role.OWNER)
@require_POST
def spend_cap(request: HttpRequest) -> HttpResponse:
    """The org's spend cap per billing period (owners only)."""
    form = _cap_form(request)
    if form is not None:
        save = partial(caps.set_spend_cap, request.org, form.cleaned_data["cap"], request.user)
        run_service(request, save, f"The organization's spend cap is {_cap_text(form)}.")
    return _see_other(reverse("billing_overview") + "#caps")


@org_member_required(Role.OWNER)
@require_POST
def token_spend_cap(request: HttpRequest, token_id: int) -> HttpResponse:
    """One API token's own spend cap (owners only; another org's token is a 404)."""
    form = _cap_form(request)
    if form is not None:
        cap = form.cleaned_data["cap"]
        save = partial(caps.set_org_token_spend_cap, request.org, token_id, cap, request.user)
        run_service(request, save, f"The token's spend cap is {_cap_text(form)}.")
    return _see_other(reverse("billing_overview") + "#caps")


@org_member_required()
@require_POST
def checkout(request: HttpRequest, plan: str) -> HttpResponse:
    success = request.build_absolute_uri(reverse("billing_success"))
    cancel = request.build_absolute_uri(reverse("billing_cancel"))

    def start() -> str:
        return start_checkout(
            request.org, request.user, plan, success + "?session_id={CHECKOUT_SESSION_ID}", cancel
        )

    return redirect_to_service(request, start, "pricing")


@org_member_required(Role.OWNER)
@require_POST
def listing_checkout(request: HttpRequest, plan_id: int) -> HttpResponse:
    """Subscribes the org to a listing's plan through Stripe Checkout (owners only). What
    stops it (billing not configured, already subscribed, Stripe down) is shown on the
    model's page; a plan the org cannot buy is a 404 like a missing one."""
    try:
        listing = listing_subscriptions.purchasable(request.org, plan_id).listing
    except NotFound as exc:
        raise Http404(exc.message) from exc
    model_page = reverse("model_detail", args=[listing.slug])
    success = request.build_absolute_uri(reverse("billing_success"))
    start = partial(
        start_listing_checkout,
        request.org,
        request.user,
        plan_id,
        success + "?session_id={CHECKOUT_SESSION_ID}",
        request.build_absolute_uri(model_page),
    )
    return redirect_to_service(request, start, model_page, respond=_see_other)


@org_member_required()
@require_POST
def customer_portal(request: HttpRequest) -> HttpResponse:
    back = request.build_absolute_uri(reverse("billing_overview"))
    return redirect_to_service(
        request,
        lambda: open_customer_portal(request.org, request.user, back),
        "billing_overview",
    )


@org_member_required()
def checkout_success(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/success.html")


@org_member_required()
def checkout_cancel(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/cancel.html")


def _page_range(request: HttpRequest, group_by: str) -> usage.UsageRange | None:
    params = {key: request.GET.get(key, "") for key in ("start", "end")}
    try:
        return usage.parse_range(request.org, {**params, "group_by": group_by})
    except InvalidInput as exc:
        messages.error(request, exc.message)
        return None


@org_member_required()
@require_GET
def usage_page(request: HttpRequest) -> HttpResponse:
    org = request.org
    usage_range = _page_range(request, "model") or usage.parse_range(org, {})
    days = usage.daily_series(org, usage_range)
    by_model = usage.usage_report(org, usage_range)
    context = {
        "range": usage_range,
        "report": by_model,
        "charts": _charts(days, by_model["data"]),
        "start": request.GET.get("start", ""),
        "end": request.GET.get("end", ""),
    }
    return render(request, "billing/usage.html", context)


def _charts(days: list[dict], models: list[dict]) -> list[tuple[str, str]]:
    def per_day(key: str, title: str) -> tuple[str, str]:
        bars = [charts.Bar(d["day"], float(d[key]), str(d[key])) for d in days]
        return title, charts.column_chart(title, bars)

    def per_model(key: str, title: str) -> tuple[str, str]:
        bars = [charts.Bar(m["model"], float(m[key]), str(m[key])) for m in models]
        return title, charts.bar_chart(title, bars)

    return [
        per_day("requests", "Requests per day"),
        per_day("total_tokens", "Tokens per day"),
        per_day("cost", "Cost per day (USD)"),
        per_model("requests", "Requests per model"),
        per_model("total_tokens", "Tokens per model"),
        per_model("cost", "Cost per model (USD)"),
    ]


@org_member_required()
@require_GET
def usage_csv(request: HttpRequest) -> HttpResponse:
    group_by = request.GET.get("group_by") or "day"
    try:
        usage_range = usage.parse_range(request.org, {**request.GET.dict(), "group_by": group_by})
    except InvalidInput as exc:
        return HttpResponse(exc.message, status=400, content_type="text/plain")
    report = usage.usage_report(request.org, usage_range)
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="usage-by-{group_by}.csv"'
    writer = csv.writer(response)
    columns = ["predictions", "requests", "input_tokens", "output_tokens", "total_tokens", "cost"]
    writer.writerow([group_by, *columns])
    for row in report["data"]:
        key = row[group_by]
        if group_by == "token":
            key = f"{key['name']} (mp_{key['prefix']})" if key else "browser"
        writer.writerow([formula_safe(str(key)), *(row[c] for c in columns)])
    return response


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Stripe's events. 400 for anything unverifiable, 500 when a handler failed (Stripe
    retries), 200 otherwise, duplicates and unknown types included."""
    signature = request.headers.get("Stripe-Signature", "")
    if not settings.STRIPE_WEBHOOK_SECRET or not signature:
        return _webhook_error("missing_signature", "A valid Stripe-Signature header is required.")
    try:
        event = stripe_client.construct_event(request.body, signature)
    except stripe.SignatureVerificationError:
        return _webhook_error("bad_signature", "The signature does not match or is too old.")
    except ValueError:
        return _webhook_error("malformed_json", "The body is not a JSON event.")
    if not _looks_like_event(event):
        return _webhook_error("malformed_event", "The body is not a Stripe event.")
    try:
        outcome = stripe_events.process_event(event)
    except stripe_events.WebhookHandlerFailed:
        return JsonResponse(
            error_body("api_error", "handler_failed", "The event could not be processed."),
            status=500,
        )
    return JsonResponse({"received": True, "outcome": outcome})


def _looks_like_event(event: object) -> bool:
    return (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance(event.get("created"), int)
        and isinstance((event.get("data") or {}).get("object"), dict)
    )


def _webhook_error(code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body("invalid_request_error", code, message), status=400)
