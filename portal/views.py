"""Browser pages for organizations, members, invitations, tokens and the audit log.

Views stay thin: they parse a form, call a service and render. Role checks happen in the
services (server-side), the decorator below only spares a round trip for plain reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from billing import plans
from billing.account import billing_summary
from billing.models import Plan
from inference.models import Prediction
from models_hub import catalog
from models_hub.models import ModelListing
from models_hub.snippets import Snippet, curl_snippet, first_call_listing
from portal import services
from portal.auth import SESSION_ORG_KEY
from portal.errors import NotAllowed, NotFound, PortalError
from portal.models import ApiToken, AuditLog, Membership, Organization, Role, TokenScope
from portal.scoping import get_for_org, scoped
from portal.validators import validate_single_line

View = Callable[..., HttpResponse]


def org_member_required(minimum: str = Role.MEMBER) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.membership:
                raise Http404("No organization.")
            if not request.membership.has_role(minimum):
                raise PermissionDenied(f"This page needs the {minimum} role.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def run_service(request: HttpRequest, action: Callable[[], object], success: str) -> bool:
    """Runs a service call for a page: 404/403 propagate, other errors become a message."""
    try:
        action()
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        messages.error(request, exc.message)
        return False
    messages.success(request, success)
    return True


FEATURED_MODELS = 3


def home(request: HttpRequest) -> HttpResponse:
    """The landing page for visitors; a signed-in user's home is their dashboard."""
    if request.user.is_authenticated:
        return redirect("dashboard")
    featured = catalog.featured(None, limit=FEATURED_MODELS)
    pricing = catalog.pricing_for_many(featured)
    base_url = request.build_absolute_uri("/").rstrip("/")
    context = {
        "featured": [(listing, catalog.price_lines(pricing[listing.pk])) for listing in featured],
        "sample": curl_snippet(featured[0], base_url) if featured else None,
        "plans": Plan.objects.filter(is_public=True),
    }
    return render(request, "portal/home.html", context)


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """Browsers ask for /favicon.ico where a page links no icon (admin, the API docs, JSON):
    the SVG our pages link. Not permanent: its URL changes with its content in production."""
    return HttpResponseRedirect(static("favicon.svg"))


RECENT_PREDICTIONS = 5


@org_member_required()
def dashboard(request: HttpRequest) -> HttpResponse:
    org, membership = request.org, request.membership
    featured = catalog.featured(org, limit=1)
    context = {
        "membership": membership,
        # The plan in force: what a subscription (or its lapse) changed is visible on arrival.
        "billing": billing_summary(org),
        "period": plans.plan_state(org).period_end,
        "recent": scoped(Prediction.objects.select_related("model"), org)[:RECENT_PREDICTIONS],
        "try_model": featured[0] if featured else None,
        # A personal workspace is only "yours" to its owner; teammates see whose it is.
        "own_personal": org.is_personal and membership.role == Role.OWNER,
        "can_manage": membership.has_role(Role.ADMIN),
    }
    return render(request, "portal/dashboard.html", context)


# --- Organizations -------------------------------------------------------------------


class OrgForm(forms.Form):
    name = forms.CharField(
        max_length=120, label="Organization name", validators=[validate_single_line]
    )


@login_required
def org_list(request: HttpRequest) -> HttpResponse:
    form = OrgForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        org = services.create_org(form.cleaned_data["name"], request.user)
        request.session[SESSION_ORG_KEY] = org.pk
        messages.success(request, f"Created {org.name}; you are now working in it.")
        return redirect("org_members")
    memberships = Membership.objects.filter(user=request.user).select_related("org")
    return render(request, "portal/org_list.html", {"form": form, "memberships": memberships})


@login_required
@require_POST
def org_switch(request: HttpRequest) -> HttpResponse:
    membership = Membership.objects.filter(
        user=request.user, org__slug=request.POST.get("org", "")
    ).first()
    if membership is None:
        raise Http404("Organization not found.")
    request.session[SESSION_ORG_KEY] = membership.org_id
    messages.success(request, f"Switched to {membership.org.name}.")
    return redirect("dashboard")


def member_org(request: HttpRequest, slug: str) -> Organization:
    """One of the user's orgs by slug; another org's is a 404, exactly like a missing one."""
    membership = (
        Membership.objects.filter(user=request.user, org__slug=slug).select_related("org").first()
    )
    if membership is None:
        raise Http404("Organization not found.")
    return membership.org


@login_required
@require_POST
def org_rename(request: HttpRequest, slug: str) -> HttpResponse:
    org = member_org(request, slug)
    name = request.POST.get("name", "")
    run_service(request, lambda: services.rename_org(org, request.user, name), "Renamed.")
    return redirect("dashboard")


@org_member_required(Role.OWNER)
@require_POST
def org_delete(request: HttpRequest) -> HttpResponse:
    org = request.org
    if request.POST.get("confirm") != org.slug:
        messages.error(request, "Type the organization's slug to confirm deletion.")
        return redirect("org_members")
    if run_service(request, lambda: services.delete_org(org, request.user), "Deleted."):
        request.session.pop(SESSION_ORG_KEY, None)
        return redirect("dashboard")
    return redirect("org_members")


# --- Settings: the webhook signing secret ---------------------------------------------


@org_member_required(Role.ADMIN)
def org_settings(request: HttpRequest) -> HttpResponse:
    response = render(request, "portal/settings.html", {"org": request.org})
    # The page shows a secret: neither the browser nor a proxy may keep it.
    response["Cache-Control"] = "no-store"
    return response


@org_member_required(Role.ADMIN)
@require_POST
def webhook_secret_rotate(request: HttpRequest) -> HttpResponse:
    run_service(
        request,
        lambda: services.rotate_webhook_secret(request.org, request.user),
        "Webhook secret rotated: update your receivers with the new one.",
    )
    return redirect("org_settings")


# --- Members and invitations ---------------------------------------------------------


class RetentionForm(forms.Form):
    retention = forms.TypedChoiceField(
        label="Keep prediction inputs and outputs for",
        choices=[
            (3600, "1 hour"),
            (86400, "1 day"),
            (7 * 86400, "7 days"),
            (30 * 86400, "30 days"),
            (90 * 86400, "90 days"),
            (365 * 86400, "1 year"),
        ],
        coerce=int,
    )


def retention_label(retention: timedelta) -> str:
    labels = dict(RetentionForm.base_fields["retention"].choices)
    return labels.get(int(retention.total_seconds()), str(retention))


@org_member_required(Role.ADMIN)
@require_POST
def org_retention(request: HttpRequest) -> HttpResponse:
    form = RetentionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the listed retention periods.")
        return redirect("org_members")
    retention = timedelta(seconds=form.cleaned_data["retention"])
    run_service(
        request,
        lambda: services.set_prediction_retention(request.org, request.user, retention),
        "Data retention updated.",
    )
    return redirect("org_members")


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=[(Role.MEMBER, "Member"), (Role.ADMIN, "Admin")])


@org_member_required()
def org_members(request: HttpRequest) -> HttpResponse:
    org = request.org
    context = {
        "members": org.memberships.select_related("user").order_by("created_at"),
        "invitations": [i for i in org.invitations.all() if i.is_pending],
        "invite_form": InviteForm(),
        "retention_label": retention_label(org.prediction_retention),
        "retention_form": RetentionForm(
            initial={"retention": int(org.prediction_retention.total_seconds())}
        ),
        "roles": Role.choices,
        "can_manage": request.membership.has_role(Role.ADMIN),
        "is_owner": request.membership.has_role(Role.OWNER),
    }
    return render(request, "portal/members.html", context)


@org_member_required(Role.ADMIN)
@require_POST
def invite_create(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter a valid e-mail address and role.")
        return redirect("org_members")
    email, role = form.cleaned_data["email"], form.cleaned_data["role"]
    base_url = request.build_absolute_uri("/")
    run_service(
        request,
        lambda: services.invite_member(request.org, request.user, email, role, base_url=base_url),
        f"Invitation sent to {email}.",
    )
    return redirect("org_members")


@org_member_required(Role.ADMIN)
@require_POST
def invite_revoke(request: HttpRequest, invitation_id: int) -> HttpResponse:
    run_service(
        request,
        lambda: services.revoke_invitation(request.org, request.user, invitation_id),
        "Invitation revoked.",
    )
    return redirect("org_members")


def invitation_accept(request: HttpRequest, key: str) -> HttpResponse:
    try:
        invitation = services.find_invitation(key)
    except PortalError as exc:
        return render(request, "portal/invitation.html", {"error": exc.message}, status=exc.status)
    if not request.user.is_authenticated:
        return render(request, "portal/invitation.html", {"invitation": invitation, "key": key})
    if request.method == "POST":
        try:
            membership = services.accept_invitation(key, request.user)
        except PortalError as exc:
            context = {"error": exc.message, "invitation": invitation}
            return render(request, "portal/invitation.html", context, status=exc.status)
        request.session[SESSION_ORG_KEY] = membership.org_id
        messages.success(request, f"You joined {membership.org.name}.")
        return redirect("dashboard")
    return render(request, "portal/invitation.html", {"invitation": invitation, "key": key})


@org_member_required()
@require_POST
def member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    role = request.POST.get("role", "")
    run_service(
        request,
        lambda: services.change_role(request.org, request.user, membership_id, role),
        "Role updated.",
    )
    return redirect("org_members")


@org_member_required()
@require_POST
def member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    leaving = request.membership.pk == membership_id
    done = run_service(
        request,
        lambda: services.remove_member(request.org, request.user, membership_id),
        "You left the organization." if leaving else "Member removed.",
    )
    if done and leaving:
        request.session.pop(SESSION_ORG_KEY, None)
        return redirect("dashboard")
    return redirect("org_members")


# --- API tokens ----------------------------------------------------------------------


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    scopes = forms.MultipleChoiceField(
        choices=TokenScope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[TokenScope.PREDICT, TokenScope.READ],
    )
    expires_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, label="Expires after (days)"
    )
    allowed_models = forms.CharField(
        max_length=2000,
        required=False,
        label="Allowed models",
        help_text="Comma-separated model slugs; empty allows every model.",
    )

    def clean_allowed_models(self) -> list[str]:
        raw = self.cleaned_data["allowed_models"]
        return [slug.strip() for slug in raw.split(",") if slug.strip()]


# The plaintext of a token just issued, kept server-side in the session between the POST
# that creates it and the one GET that shows it (never in a URL, a cookie or the messages).
JUST_ISSUED_SESSION_KEY = "new_api_token"


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    plaintext: str
    # What the token's first call runs, and that call as curl (None: it cannot run one).
    model: ModelListing | None
    first_call: Snippet | None


def keep_new_token(request: HttpRequest, issued: services.IssuedToken) -> None:
    request.session[JUST_ISSUED_SESSION_KEY] = {
        "org": issued.token.org_id,
        "token": issued.token.pk,
        "plaintext": issued.plaintext,
    }


def take_new_token(request: HttpRequest) -> NewToken | None:
    """The secret for this one page view: read once, gone on reload, and only shown in the
    org it belongs to (the user may have switched in between)."""
    kept = request.session.pop(JUST_ISSUED_SESSION_KEY, None)
    if not kept or kept["org"] != request.org.pk:
        return None
    tokens = scoped(ApiToken.objects.select_related("org"), request.org)
    token = tokens.filter(pk=kept["token"]).first()
    if token is None:
        return None
    listing = first_call_listing(token)
    base_url = request.build_absolute_uri("/").rstrip("/")
    first_call = curl_snippet(listing, base_url) if listing else None
    return NewToken(token, kept["plaintext"], listing, first_call)


def get_org_token(request: HttpRequest, token_id: int) -> ApiToken:
    """Another org's token is a 404, exactly like a missing one."""
    try:
        return get_for_org(ApiToken.objects.select_related("created_by"), request.org, pk=token_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


@org_member_required(Role.ADMIN)
def token_list(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        days = data["expires_days"]
        issued: list[services.IssuedToken] = []

        def issue() -> None:
            issued.append(
                services.issue_token(
                    request.org,
                    request.user,
                    data["name"],
                    scopes=data["scopes"],
                    expires_at=timezone.now() + timedelta(days=days) if days else None,
                    allowed_models=data["allowed_models"],
                )
            )

        if run_service(request, issue, "Token created. Copy it now: it is shown only once."):
            keep_new_token(request, issued[0])
            # Post/Redirect/Get: reloading the page that follows cannot issue a second token.
            return HttpResponseRedirect(reverse("token_list"), status=303)
    tokens = scoped(request.org.tokens.all(), request.org).select_related("created_by")
    context = {"form": form, "tokens": tokens, "new_token": take_new_token(request)}
    response = render(request, "portal/tokens.html", context)
    # The one page that shows a secret must not be kept by the browser or a proxy.
    response["Cache-Control"] = "no-store"
    return response


@org_member_required(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    """GET asks for confirmation (a page, so it works without JavaScript); POST revokes."""
    if request.method == "GET":
        token = get_org_token(request, token_id)
        return render(request, "portal/token_revoke.html", {"token": token})
    run_service(
        request,
        lambda: services.revoke_token(request.org, request.user, token_id),
        "Token revoked.",
    )
    return redirect("token_list")


@org_member_required(Role.ADMIN)
def audit_log(request: HttpRequest) -> HttpResponse:
    entries = scoped(AuditLog.objects.select_related("actor"), request.org)[:200]
    return render(request, "portal/audit.html", {"entries": entries})
