"""The publisher page: the org's Stripe Connect status, and the way into Stripe's hosted
onboarding for owners. Views stay thin: `billing.publishers` decides and enforces roles."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from billing import publishers, stripe_client
from portal.errors import NotAllowed, NotFound, PortalError
from portal.models import Role
from portal.views import org_member_required


@org_member_required()
@require_GET
def publisher_page(request: HttpRequest) -> HttpResponse:
    account = publishers.account_of(request.org)
    context = {
        "account": account,
        "state": publishers.onboarding_state(account),
        "is_owner": request.membership.has_role(Role.OWNER),
        "payouts_configured": stripe_client.is_configured(),
        "back_from_stripe": request.GET.get("onboarding") == "done",
    }
    return render(request, "billing/publisher.html", context)


def _to_onboarding(request: HttpRequest) -> HttpResponse:
    """Redirects to a fresh onboarding link; 404/403 propagate, other errors are shown."""
    page = reverse("publisher")
    refresh_url = request.build_absolute_uri(reverse("publisher_onboarding_refresh"))
    return_url = request.build_absolute_uri(page) + "?onboarding=done"
    try:
        url = publishers.start_onboarding(request.org, request.user, refresh_url, return_url)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect(page)
    return redirect(url)


@org_member_required()
@require_POST
def onboarding(request: HttpRequest) -> HttpResponse:
    return _to_onboarding(request)


@org_member_required()
@require_GET
def onboarding_refresh(request: HttpRequest) -> HttpResponse:
    """Where Stripe sends the browser when a link expired or was used: a new link."""
    return _to_onboarding(request)
