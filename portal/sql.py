"""Helpers for the few hot statements written as SQL instead of built by the ORM per call
(`billing.counters`, `inference.run_statements`): names come from the models, so a
rename cannot leave the SQL behind, and rows come back as the ORM would have read them."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache, lru_cache
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.expressions import Col

M = TypeVar("M", bound=Model)


def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[Model], field: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(field).column)


def converted(fields: Sequence[Field], values: Sequence[object]) -> list[object]:
    """Column values as the ORM would have read them (SQLite returns numbers and text
    where fields hold Decimals and datetimes; JSON arrives as text)."""
    wrapper = connections[DEFAULT_DB_ALIAS]
    result = []
    for (col, converters), value in zip(_converters(wrapper, tuple(fields)), values, strict=True):
        for converter in converters:
            value = converter(value, col, wrapper)
        result.append(value)
    return result


@lru_cache(maxsize=256)
def _converters(wrapper: BaseDatabaseWrapper, fields: tuple[Field, ...]) -> list[tuple[Col, list]]:
    """Each field's column and converters, in the order the ORM's compiler applies them:
    per connection (they are its backend's), worked out once instead of for every row."""
    found = []
    for field in fields:
        col = field.get_col(field.model._meta.db_table)
        found.append((col, wrapper.ops.get_db_converters(col) + col.get_db_converters(wrapper)))
    return found


def instance(model: type[Model], fields: Sequence[Field], row: Sequence[object]) -> Model:
    """A saved instance of `model` with `fields` loaded from `row` (the rest deferred)."""
    return model.from_db(connection.alias, [f.attname for f in fields], converted(fields, row))


@cache
def insert_sql(model: type[Model], vendor: str) -> tuple[str, tuple[Field, ...]]:
    """An INSERT of every column but a primary key that the database generates."""
    fields = tuple(f for f in model._meta.concrete_fields if not (f.primary_key and f.db_returning))
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {table(model)} ({columns}) VALUES ({placeholders})"  # noqa: S608
    return sql, fields


def insert_values(row: Model, fields: Sequence[Field]) -> list[object]:
    """`fields` of a new `row` as its save would write them (defaults, auto_now_add)."""
    return [f.get_db_prep_save(f.pre_save(row, add=True), connection) for f in fields]


def insert(row: M) -> M:
    """Saves a new `row` in one statement, as `save()` would, without the ORM's compiling
    on every call and without signals: for rows written on every call that nothing
    listens to (ledger entries, receipts, predictions)."""
    model = type(row)
    sql, fields = insert_sql(model, connection.vendor)
    values = insert_values(row, fields)
    generated = model._meta.pk.db_returning
    with connection.cursor() as cursor:
        if generated and connection.features.can_return_columns_from_insert:
            cursor.execute(f"{sql} RETURNING {column(model, model._meta.pk.name)}", values)
            row.pk = cursor.fetchone()[0]
        else:
            cursor.execute(sql, values)
            if generated:
                row.pk = cursor.lastrowid
    mark_saved(row)
    return row


def mark_saved(row: Model) -> None:
    """What `save()` records on an instance it inserted."""
    row._state.adding = False
    row._state.db = connection.alias
