"""The org's webhook signing secret, for receivers that verify deliveries, and its account
webhook (API.md, "Outgoing webhooks"). Always the caller's own org: there is no org in the
path."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal import account_webhooks
from portal.api.permissions import CanRead, HasOrg
from portal.errors import InvalidInput
from portal.models import ACCOUNT_WEBHOOK_EVENTS, ACCOUNT_WEBHOOK_URL_LENGTH, Membership, Role


class AdminInTheBrowser(BasePermission):
    """A token with `read` may fetch the secret (admins issue tokens); in the browser the
    secret is the owners' and admins' only, as on the settings page."""

    message = "Only owners and admins of the organization see its webhook secret."

    def has_permission(self, request: Request, view) -> bool:
        principal = request.auth
        if principal.token is not None:
            return True
        membership = Membership.objects.filter(org=principal.org, user=principal.user).first()
        return membership is not None and membership.has_role(Role.ADMIN)


class WebhookSecretSerializer(serializers.Serializer):
    key = serializers.CharField()


class WebhookSecretView(APIView):
    """The secret that signs this organization's webhooks (`whsec_...`): give it to a
    Standard Webhooks library to verify deliveries."""

    permission_classes = [HasOrg, CanRead, AdminInTheBrowser]

    @extend_schema(
        responses=WebhookSecretSerializer,
        operation_id="webhooks_default_secret_retrieve",
        examples=[
            OpenApiExample(
                "Secret",
                response_only=True,
                value={"key": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"},
            )
        ],
    )
    def get(self, request: Request) -> Response:
        response = Response({"key": request.auth.org.webhook_secret})
        response["Cache-Control"] = "no-store"
        return response


# --- The account webhook ----------------------------------------------------------------


class ChangedInTheBrowser(BasePermission):
    """Changing where account events go: owners and admins in the browser.

    Tokens cannot: a token's scopes are `predict` and `read`, and neither manages the org's
    settings (`read` would let every read-only token redirect the org's billing events).
    Should a settings scope be added to `TokenScope`, allow it here."""

    message = (
        "API tokens cannot change the account webhook; an owner or admin changes it while "
        "signed in."
    )

    def has_permission(self, request: Request, view) -> bool:
        principal = request.auth
        if principal.token is not None:
            return False
        membership = Membership.objects.filter(org=principal.org, user=principal.user).first()
        if membership is None or not membership.has_role(Role.ADMIN):
            self.message = "Only owners and admins of the organization change its webhook."
            return False
        return True


class AccountWebhookSerializer(serializers.Serializer):
    url = serializers.CharField(
        allow_null=True,
        allow_blank=True,
        max_length=ACCOUNT_WEBHOOK_URL_LENGTH,
        help_text='A public http(s) URL; null or "" for none.',
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=ACCOUNT_WEBHOOK_EVENTS),
        required=False,
        allow_null=True,
        help_text="The account events to send, each at most once; all of them when omitted.",
    )


ACCOUNT_WEBHOOK_EXAMPLE = OpenApiExample(
    "Billing alerts only",
    value={"url": "https://hooks.acme.example/model-portal", "events": ["billing.threshold"]},
)
FIELDS = ("url", "events")


def _body(request: Request) -> tuple[object, object]:
    """The body's url and events, checked for shape only (the service checks values)."""
    data = request.data
    if not isinstance(data, dict) or not data:
        raise InvalidInput('Send a JSON object: {"url": ..., "events": [...]}.')
    unknown = sorted(str(key) for key in data if key not in FIELDS)
    if unknown:
        raise InvalidInput(
            f"Unknown field: {', '.join(unknown)[:100]}. The fields are url and events.",
            param=unknown[0][:100],
        )
    if "url" not in data:
        raise InvalidInput("url is required (null or an empty string for none).", param="url")
    return data["url"], data.get("events")


class AccountWebhookView(APIView):
    """Where this organization's account events (`billing.threshold`, `model.deprecated`)
    are sent, signed with its webhook secret like prediction webhooks.

    GET: as the webhook secret (tokens with `read`; owners and admins in the browser).
    PUT: replaces the configuration; owners and admins in the browser only. No token scope
    manages the org's settings (scopes are `predict` and `read`), so tokens get 403.
    Audited as `org.account_webhook_changed`."""

    def get_permissions(self):
        if self.request.method in SAFE_METHODS:
            admins = AdminInTheBrowser()
            admins.message = "Only owners and admins of the organization see its webhook."
            return [HasOrg(), CanRead(), admins]
        return [HasOrg(), ChangedInTheBrowser()]

    @extend_schema(
        responses=AccountWebhookSerializer,
        operation_id="webhooks_default_retrieve",
        examples=[ACCOUNT_WEBHOOK_EXAMPLE],
    )
    def get(self, request: Request) -> Response:
        config = account_webhooks.get_account_webhook(request.auth.org)
        return Response(config.as_dict())

    @extend_schema(
        request=AccountWebhookSerializer,
        responses={
            200: AccountWebhookSerializer,
            400: OpenApiResponse(description="A bad URL or event list; nothing changed."),
            403: OpenApiResponse(
                description="API tokens cannot change it: an owner or admin does, signed in."
            ),
        },
        operation_id="webhooks_default_update",
        examples=[ACCOUNT_WEBHOOK_EXAMPLE],
    )
    def put(self, request: Request) -> Response:
        url, events = _body(request)
        config = account_webhooks.set_account_webhook(
            request.auth.org, request.auth.user, url, events
        )
        return Response(config.as_dict())
