"""The two statements that move a prediction in the worker, written once as SQL: the
claim (starting -> processing) and the terminal update. Each is a conditional UPDATE that
returns the row it changed, so the worker learns in the same round trip whether it won
the transition and what the row holds now: the ORM's `update()` returns only a count,
and reading the row back cost a second statement and its compilation on every run.

Plain enough for PostgreSQL and SQLite (3.35+ has RETURNING); every value is a query
parameter (hence the S608 exemptions)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache

from django.db import connection
from django.db.models import Field

from inference.models import Prediction, Status
from portal.sql import column, converted, instance, table

# `now - created_at` in seconds, computed by the claiming UPDATE itself, in each
# backend's own arithmetic (SQLite has no interval type).
_SECONDS_SINCE_CREATED = {
    "postgresql": "EXTRACT(EPOCH FROM (%s - {created}))::double precision",
    "sqlite": "((julianday(%s) - julianday({created})) * 86400.0)",
}


def _returning(fields: Sequence[Field]) -> str:
    return ", ".join(connection.ops.quote_name(f.column) for f in fields)


def _prep(field_name: str, value: object) -> object:
    return Prediction._meta.get_field(field_name).get_db_prep_save(value, connection)


@cache
def _claim_sql(vendor: str) -> str:
    status, attempt = column(Prediction, "status"), column(Prediction, "attempt")
    seconds = _SECONDS_SINCE_CREATED[vendor].format(created=column(Prediction, "created_at"))
    assignments = ", ".join(
        f"{column(Prediction, name)} = %s"
        for name in ("status", "started_at", "lease_expires_at", "worker_host")
    )
    return (
        f"UPDATE {table(Prediction)} SET {assignments}, "  # noqa: S608
        # In the same statement: a worker killed right after claiming still counts.
        f"{attempt} = {attempt} + 1, {column(Prediction, 'queue_time')} = {seconds} "
        f"WHERE {column(Prediction, 'id')} = %s AND {status} = %s "
        f"RETURNING {_returning(Prediction._meta.concrete_fields)}"
    )


def claim(
    prediction_id: str, now: datetime, lease_until: datetime, worker_host: str
) -> Prediction | None:
    """The claimed row, every column as it is now; None if it was not `starting`."""
    values = [
        Status.PROCESSING,
        _prep("started_at", now),
        _prep("lease_expires_at", lease_until),
        worker_host,
        _prep("started_at", now),
        prediction_id,
        Status.STARTING,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(connection.vendor), values)
        row = cursor.fetchone()
    if row is None:
        return None
    return instance(Prediction, Prediction._meta.concrete_fields, row)


@cache
def _finish_sql(vendor: str, changed: tuple[str, ...], from_count: int, returned: str) -> str:
    assignments = ", ".join(f"{column(Prediction, name)} = %s" for name in changed)
    statuses = ", ".join(["%s"] * from_count)
    return (
        f"UPDATE {table(Prediction)} SET {assignments} "  # noqa: S608
        f"WHERE {column(Prediction, 'id')} = %s "
        f"AND {column(Prediction, 'status')} IN ({statuses}) RETURNING {returned}"
    )


def finish(
    prediction_id: str,
    changes: dict[str, object],
    from_statuses: Sequence[str],
    returned: Sequence[Field],
) -> list[object] | None:
    """Applies `changes` if the row's status is one of `from_statuses`; the `returned`
    columns as they are after it (ORM values), or None if the row was not in one."""
    changed = tuple(changes)
    sql = _finish_sql(connection.vendor, changed, len(from_statuses), _returning(returned))
    values = [_prep(name, value) for name, value in changes.items()]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, prediction_id, *from_statuses])
        row = cursor.fetchone()
    if row is None:
        return None
    return converted(returned, row)
