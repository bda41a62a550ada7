"""`GET /api/v1/models` and `GET /api/v1/models/{slug}`: public, and org-aware when signed in.

Anyone may read the public catalog; a caller with a token (or a session) also sees its
org's private listings. Another org's private listing is a 404 like an unknown slug.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from models_hub import catalog
from models_hub.api.serializers import (
    CatalogQuerySerializer,
    ModelDetailSerializer,
    ModelSummarySerializer,
)
from portal.auth import Principal
from portal.models import Organization


def caller_org(request: Request) -> Organization | None:
    return request.auth.org if isinstance(request.auth, Principal) else None


class ModelListView(GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = ModelSummarySerializer

    @extend_schema(
        parameters=[CatalogQuerySerializer],
        responses=ModelSummarySerializer(many=True),
        operation_id="models_list",
    )
    def get(self, request: Request) -> Response:
        query = CatalogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = {name: query.validated_data.get(name, "") for name in ("q", "task", "tag")}
        listings = catalog.search_catalog(caller_org(request), **filters)
        page = self.paginate_queryset(listings)
        serializer = self.get_serializer(page, many=True)
        return self.get_paginated_response(serializer.data)


class ModelDetailView(GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = ModelDetailSerializer

    @extend_schema(operation_id="models_retrieve")
    def get(self, request: Request, slug: str) -> Response:
        listing = catalog.get_listing(caller_org(request), slug)
        return Response(self.get_serializer(listing).data)
