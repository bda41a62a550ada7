from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import publisher_ledger, publisher_stats, usage
from portal.api.pagination import CursorlessPagination
from portal.api.permissions import CanRead, CanReadEarnings, HasOrg

_ROW = {
    "predictions": 42,
    "requests": 40,
    "input_tokens": 1830,
    "output_tokens": 5120,
    "total_tokens": 6950,
    "cost": "0.000000",
}
USAGE_EXAMPLE = OpenApiExample(
    "By model",
    response_only=True,
    value={
        "object": "usage",
        "start": "2026-11-01T00:00:00Z",
        "end": "2026-12-01T00:00:00Z",
        "group_by": "model",
        "data": [{"model": "smollm2-135m-instruct", **_ROW}],
        "total": _ROW,
    },
)


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
        examples=[USAGE_EXAMPLE],
    )
    def get(self, request: Request) -> Response:
        org = request.auth.org
        usage_range = usage.parse_range(org, request.query_params)
        return Response(usage.usage_report(org, usage_range))


LEDGER_EXAMPLE = OpenApiExample(
    "Entries and a transfer",
    response_only=True,
    value={
        "count": 2,
        "next": None,
        "previous": None,
        "results": [
            {
                "object": "transfer", "id": 7, "created_at": "2026-11-08T01:00:00Z",
                "status": "paid", "period": "2026-10", "amount": "26.5", "currency": "usd",
                "stripe_transfer_id": "tr_1",
            },
            {
                "object": "royalty_entry", "id": 912, "created_at": "2026-10-31T12:00:00Z",
                "kind": "usage", "model": "acme-llm", "customer_charge": "0.015",
                "publisher_share": "0.012", "platform_fee": "0.003", "fee_percent": "20",
                "currency": "usd",
            },
        ],
    },
)  # fmt: skip
STATS_EXAMPLE = OpenApiExample(
    "One listing, one day",
    response_only=True,
    value={
        "object": "publisher_stats",
        "start": "2026-11-01T00:00:00Z",
        "end": "2026-11-02T00:00:00Z",
        "listings": [
            {
                "model": "acme-llm", "name": "Acme LLM",
                "days": [{
                    "date": "2026-11-01", "calls": 120, "unique_orgs": 7,
                    "input_tokens": 5400, "output_tokens": 20100, "revenue": "1.8",
                    "publisher_share": "1.44", "error_rate": 0.0083,
                    "latency_ms": {"p50": 840.0, "p95": 2210.5},
                }],
            }
        ],
    },
)  # fmt: skip


class PublisherLedgerView(APIView):
    """The calling org's royalty entries and payout transfers, newest first, paginated."""

    permission_classes = [HasOrg, CanReadEarnings]

    @extend_schema(
        operation_id="publisher_ledger_list",
        parameters=[
            OpenApiParameter("start", str, description="YYYY-MM-DD or ISO 8601; optional."),
            OpenApiParameter("end", str, description="YYYY-MM-DD (inclusive) or ISO 8601."),
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int),
        ],
        responses=OpenApiTypes.OBJECT,
        examples=[LEDGER_EXAMPLE],
    )
    def get(self, request: Request) -> Response:
        start, end = publisher_ledger.parse_range(request.query_params)
        rows = publisher_ledger.ledger_rows(request.auth.org, start, end)
        paginator = CursorlessPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response([publisher_ledger.row_payload(row) for row in page])


class PublisherStatsView(APIView):
    """Per listing of the calling org, by UTC day: calls, unique orgs, tokens, revenue,
    publisher share, error rate, p50/p95 latency."""

    permission_classes = [HasOrg, CanReadEarnings]

    @extend_schema(
        operation_id="publisher_stats_retrieve",
        parameters=[
            OpenApiParameter(
                "start", str, description="YYYY-MM-DD or ISO 8601; default: 30 days ago."
            ),
            OpenApiParameter(
                "end", str, description="YYYY-MM-DD (inclusive) or ISO 8601; default: today."
            ),
        ],
        responses=OpenApiTypes.OBJECT,
        examples=[STATS_EXAMPLE],
    )
    def get(self, request: Request) -> Response:
        start, end = publisher_stats.parse_range(request.query_params)
        return Response(publisher_stats.stats(request.auth.org, start, end))
