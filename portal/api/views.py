from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import generics, viewsets
from rest_framework.request import Request

from portal.scoping import scoped


class OrgScopedMixin:
    """The queryset is always the request org's rows.

    Subclasses set `org_queryset` and may not override `get_queryset`; a view that truly
    needs unscoped rows must say so with a method named `dangerously_get_queryset`.
    """

    org_queryset: QuerySet

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} overrides get_queryset; set org_queryset or filter_org_queryset"
            )

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        request.org = request.auth.org

    def get_queryset(self) -> QuerySet:
        return self.filter_org_queryset(scoped(self.org_queryset.all(), self.request.auth.org))

    def filter_org_queryset(self, queryset: QuerySet) -> QuerySet:
        """Extra filters (query parameters) on top of the org scope."""
        return queryset


class OrgScopedViewSet(OrgScopedMixin, viewsets.GenericViewSet):
    pass


class OrgScopedAPIView(OrgScopedMixin, generics.GenericAPIView):
    pass
