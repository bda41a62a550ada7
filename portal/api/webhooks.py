"""The org's webhook signing secret, for receivers that verify deliveries (API.md,
"Outgoing webhooks"). Always the caller's own org: there is no org in the path."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api.permissions import CanRead, HasOrg
from portal.models import Membership, Role


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
