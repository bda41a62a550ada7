from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.account import billing_summary
from portal.api.permissions import CanRead, HasOrg


class AccountSerializer(serializers.Serializer):
    org = serializers.DictField()
    user = serializers.DictField(allow_null=True)
    token = serializers.DictField(allow_null=True)
    plan = serializers.DictField(allow_null=True)
    quota = serializers.DictField()
    period = serializers.DictField()


def account_payload(request: Request) -> dict:
    principal = request.auth
    org = principal.org
    token = principal.token
    return {
        "org": {"slug": org.slug, "name": org.name, "is_personal": org.is_personal},
        "user": {"email": principal.user.email} if principal.user else None,
        "token": (
            {"name": token.name, "prefix": token.prefix, "scopes": token.scopes} if token else None
        ),
        **billing_summary(org),
    }


class AccountView(APIView):
    """The calling token's (or session's) organization."""

    permission_classes = [HasOrg, CanRead]

    @extend_schema(responses=AccountSerializer, operation_id="account_retrieve")
    def get(self, request: Request) -> Response:
        return Response(account_payload(request))
