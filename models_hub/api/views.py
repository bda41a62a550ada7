"""`GET /api/v1/models` and `GET /api/v1/models/{slug}`: public, and org-aware when signed in.

Anyone may read the public catalog; a caller with a token (or a session) also sees its
org's private listings. Another org's private listing is a 404 like an unknown slug.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from models_hub import catalog
from models_hub.api.serializers import (
    CatalogQuerySerializer,
    ModelDetailSerializer,
    ModelSummarySerializer,
    ModelVersionSerializer,
)
from portal.auth import Principal
from portal.models import Organization

SUMMARY = {
    "slug": "smollm2-135m-instruct",
    "name": "SmolLM2 135M Instruct",
    "summary": "A small chat model that runs anywhere.",
    "task": "text-generation",
    "tags": ["chat"],
    "publisher": "Model Portal",
    "visibility": "public",
    "status": "published",
    "hardware": "cpu",
    "diagnostic": False,
    "url": "https://portal.example.com/api/v1/models/smollm2-135m-instruct",
    "pricing": {
        "currency": "usd",
        "input_per_million": "0.5",
        "output_per_million": "1.5",
        "per_request": "0",
        "per_second": "0",
        "plans": [{"slug": "pro", "name": "Pro"}, {"slug": "team", "name": "Team"}],
    },
}
LIST_EXAMPLE = OpenApiExample(
    "Catalog page",
    response_only=True,
    value={"count": 1, "next": None, "previous": None, "results": [SUMMARY]},
)
DETAIL_EXAMPLE = OpenApiExample(
    "A chat model",
    response_only=True,
    value={
        **SUMMARY,
        "description": "SmolLM2 is a family of compact language models…",
        "revision": "",
        "input_schema": {"type": "object", "properties": {"prompt": {"type": "string"}}},
        "example_input": {"prompt": "Write a haiku about GPUs.", "max_new_tokens": 64},
        "runtime": {
            "max_context": 8192,
            "default_params": {"max_new_tokens": 256, "temperature": 0.7},
            "max_params": {"max_new_tokens": 1024},
        },
    },
)

VERSIONS_EXAMPLE = OpenApiExample(
    "Newest first",
    response_only=True,
    value=[
        {
            "id": "5c7d5dc6dd8b",
            "created_at": "2026-11-20T09:30:00Z",
            "status": "current",
            "retires_at": None,
        },
        {
            "id": "a41f09be2c10",
            "created_at": "2026-10-02T14:05:00Z",
            "status": "deprecated",
            "retires_at": "2026-12-31T00:00:00Z",
        },
    ],
)


def caller_org(request: Request) -> Organization | None:
    return request.auth.org if isinstance(request.auth, Principal) else None


class ModelListView(GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = ModelSummarySerializer

    @extend_schema(
        parameters=[CatalogQuerySerializer],
        responses=ModelSummarySerializer(many=True),
        operation_id="models_list",
        examples=[LIST_EXAMPLE],
    )
    def get(self, request: Request) -> Response:
        query = CatalogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = {name: query.validated_data.get(name, "") for name in ("q", "task", "tag")}
        listings = catalog.search_catalog(caller_org(request), **filters)
        page = self.paginate_queryset(listings)
        pricing = catalog.pricing_for_many(page)
        serializer = self.get_serializer(
            page, many=True, context={**self.get_serializer_context(), "pricing": pricing}
        )
        return self.get_paginated_response(serializer.data)


class ModelDetailView(GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = ModelDetailSerializer

    @extend_schema(operation_id="models_retrieve", examples=[DETAIL_EXAMPLE])
    def get(self, request: Request, slug: str) -> Response:
        listing = catalog.get_listing(caller_org(request), slug)
        return Response(self.get_serializer(listing).data)


class ModelVersionsView(GenericAPIView):
    """A model's versions, newest first; pin one with `"model": "slug:<id>"`."""

    permission_classes = [AllowAny]
    serializer_class = ModelVersionSerializer
    pagination_class = None

    @extend_schema(
        operation_id="models_versions_list",
        responses=ModelVersionSerializer(many=True),
        examples=[VERSIONS_EXAMPLE],
    )
    def get(self, request: Request, slug: str) -> Response:
        listing = catalog.get_listing(caller_org(request), slug)
        return Response(self.get_serializer(listing.versions.all(), many=True).data)
