from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import usage
from portal.api.permissions import CanRead, HasOrg


class UsageView(APIView):
    """The calling org's usage: requests, tokens and cost, grouped by model, day or token."""

    permission_classes = [HasOrg, CanRead]

    @extend_schema(
        operation_id="usage_retrieve",
        parameters=[
            OpenApiParameter(
                "start",
                str,
                description="YYYY-MM-DD or ISO 8601; default: "
                "the start of the current billing period.",
            ),
            OpenApiParameter(
                "end",
                str,
                description="YYYY-MM-DD (inclusive) or ISO 8601; "
                "default: the end of the current billing period.",
            ),
            OpenApiParameter("group_by", str, enum=list(usage.GROUPS), default="model"),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        org = request.auth.org
        usage_range = usage.parse_range(org, request.query_params)
        return Response(usage.usage_report(org, usage_range))
