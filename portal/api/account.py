from drf_spectacular.utils import OpenApiExample, extend_schema
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
    subscriptions = serializers.ListField(
        child=serializers.DictField(),
        help_text="The org's subscriptions to publishers' listings, each with its included "
        "usage this period and `overage_percent`: the percentage of the listing's "
        "pay-as-you-go price paid beyond it (a decimal string, 100 = the full price).",
    )
    quota = serializers.DictField()
    credits = serializers.DictField(help_text="Prepaid credits: balance and reserved.")
    spend = serializers.DictField(help_text="Spend cap, spent, reserved, remaining.")
    currency = serializers.CharField()
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


ACCOUNT_EXAMPLE = OpenApiExample(
    "Team on the Pro plan",
    response_only=True,
    value={
        "org": {"slug": "acme-ai", "name": "Acme AI", "is_personal": False},
        "user": {"email": "dev@acme.example"},
        "token": {"name": "ci", "prefix": "k2j4x9qa", "scopes": ["predict", "read"]},
        "plan": {
            "slug": "pro",
            "name": "Pro",
            "status": "active",
            "past_due": False,
            "cancel_at_period_end": False,
            "rate_limit_per_minute": 300,
            "allowance": "20",
            "overage_allowed": True,
        },
        "subscriptions": [
            {
                "model": "acme-labs-coder",
                "plan": {"id": 12, "name": "Team"},
                "monthly_price": "49",
                "overage_percent": "80",
                "status": "active",
                "cancel_at_period_end": False,
                "included_usage": {
                    "included": "40",
                    "used": "12.5",
                    "reserved": "0",
                    "remaining": "27.5",
                },
                "period": {"start": "2026-11-03T00:00:00Z", "end": "2026-12-03T00:00:00Z"},
            }
        ],
        "quota": {
            "allowance": {
                "included": "20",
                "used": "4.21",
                "reserved": "0.02",
                "remaining": "15.77",
            },
            "requests": 120,
            "input_tokens": 48211,
            "output_tokens": 9120,
            "overage": "0",
        },
        "credits": {"balance": "12.5", "reserved": "0"},
        "spend": {"cap": "50", "spent": "0", "reserved": "0", "remaining": "50"},
        "currency": "usd",
        "period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
    },
)


class AccountView(APIView):
    """The calling token's (or session's) organization."""

    permission_classes = [HasOrg, CanRead]

    @extend_schema(
        responses=AccountSerializer,
        operation_id="account_retrieve",
        examples=[ACCOUNT_EXAMPLE],
    )
    def get(self, request: Request) -> Response:
        return Response(account_payload(request))
