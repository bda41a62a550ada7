"""Scoped lookups: the only way pages, APIs and consumers reach tenant-owned rows.

Another org's object is reported exactly like a missing one (a 404), so nobody can learn
that an id exists by guessing it.
"""

from __future__ import annotations

from typing import TypeVar

from django.db.models import Model, QuerySet

from portal.errors import NotFound
from portal.models import Organization

M = TypeVar("M", bound=Model)


def scoped(queryset: QuerySet[M], org: Organization | None) -> QuerySet[M]:
    if org is None:
        return queryset.none()
    return queryset.filter(org=org)


def get_for_org(queryset: QuerySet[M], org: Organization | None, **lookup) -> M:
    # An id holding NUL cannot exist, and PostgreSQL refuses to even compare it.
    if any(isinstance(value, str) and "\x00" in value for value in lookup.values()):
        obj = None
    else:
        obj = scoped(queryset, org).filter(**lookup).first()
    if obj is None:
        raise NotFound(f"{queryset.model._meta.verbose_name.capitalize()} not found.")
    return obj
