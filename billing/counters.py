"""The statements every paid admission runs on the money counters (the org's period row
and its billing account) and the ledger, written once as SQL instead of built by the ORM
per call.

Building, compiling and instantiating these through the ORM cost more than running them:
about 1.5 ms of CPU per admission, a third of the admission's throughput with money on
(bench/admission.py). The SQL is plain enough for PostgreSQL and SQLite; table and
column names come from the models, so a rename cannot leave it behind; every value is
a query parameter (hence the S608 exemptions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Field, Model

from billing.models import BillingAccount, UsagePeriod, UsageRecord

ACCOUNT_FIELDS = ("id", "balance", "credits_reserved", "spend_cap")


def _table(model: type) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _column(model: type, field: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(field).column)


@cache
def _lock_period_sql(vendor: str) -> str:
    fields = UsagePeriod._meta.concrete_fields
    period_columns = ", ".join(f"p.{connection.ops.quote_name(f.column)}" for f in fields)
    account_columns = ", ".join(
        f"a.{_column(BillingAccount, name)} AS account_{name}" for name in ACCOUNT_FIELDS
    )
    org, start = _column(UsagePeriod, "org"), _column(UsagePeriod, "start")
    lock = ""
    if connection.features.has_select_for_update_of:
        lock = " FOR UPDATE OF p"
    elif connection.features.has_select_for_update:
        lock = " FOR UPDATE"
    return (
        f"SELECT {period_columns}, {account_columns} FROM {_table(UsagePeriod)} p "  # noqa: S608
        f"LEFT JOIN {_table(BillingAccount)} a ON a.{_column(BillingAccount, 'org')} = p.{org} "
        f"WHERE p.{org} = %s AND p.{start} = %s{lock}"
    )


@cache
def _period_id_sql(vendor: str) -> str:
    org, start = _column(UsagePeriod, "org"), _column(UsagePeriod, "start")
    return (
        f"SELECT {_column(UsagePeriod, 'id')} FROM {_table(UsagePeriod)} "  # noqa: S608
        f"WHERE {org} = %s AND {start} = %s"
    )


def _start_value(start: datetime) -> object:
    # As the ORM would pass it: SQLite compares the stored text, not a datetime.
    return UsagePeriod._meta.get_field("start").get_db_prep_value(start, connection)


def period_id(org_id: int, start: datetime) -> int | None:
    """The id of the org's period row starting at `start`, if it has one yet."""
    with connection.cursor() as cursor:
        cursor.execute(_period_id_sql(connection.vendor), [org_id, _start_value(start)])
        row = cursor.fetchone()
    return None if row is None else row[0]


def lock_period(org_id: int, start: datetime) -> tuple[UsagePeriod, BillingAccount | None] | None:
    """The org's period row starting at `start`, locked until the transaction ends, and
    the org's billing account as of then (not locked: credits only ever change by
    conditional UPDATE); None if the period has no row yet."""
    with connection.cursor() as cursor:
        cursor.execute(_lock_period_sql(connection.vendor), [org_id, _start_value(start)])
        row = cursor.fetchone()
    if row is None:
        return None
    fields = UsagePeriod._meta.concrete_fields
    period = UsagePeriod.from_db(
        connection.alias, [f.attname for f in fields], _converted(fields, row[: len(fields)])
    )
    account_id, balance, reserved, spend_cap = row[len(fields) :]
    if account_id is None:
        return period, None
    account = BillingAccount(
        id=account_id,
        org_id=org_id,
        balance=_decimal(balance),
        credits_reserved=_decimal(reserved),
        spend_cap=_decimal(spend_cap),
    )
    return period, account


def _converted(fields: Sequence[Field], values: Sequence[object]) -> list[object]:
    """Column values as the ORM would have read them (SQLite returns numbers and text
    where fields hold Decimals and datetimes)."""
    converted = []
    for field, value in zip(fields, values, strict=True):
        column = field.get_col(field.model._meta.db_table)
        # In the order the ORM's compiler applies them.
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        for converter in converters:
            value = converter(value, column, connection)
        converted.append(value)
    return converted


def _decimal(value: object) -> Decimal | None:
    # SQLite returns numbers for the account's decimal columns.
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(str(value))


@dataclass(frozen=True)
class Reservation:
    """What a call reserves beyond its ledger entry: credits held on the account (none
    when `account_id` is None) and the amounts added to its period's counters."""

    account_id: int | None
    credits: Decimal
    period_id: int
    allowance: Decimal
    paid: Decimal


@cache
def _hold_credits_sql(vendor: str) -> str:
    reserved = _column(BillingAccount, "credits_reserved")
    balance = _column(BillingAccount, "balance")
    return (
        f"UPDATE {_table(BillingAccount)} SET {reserved} = {reserved} + %s "  # noqa: S608
        f"WHERE {_column(BillingAccount, 'id')} = %s AND {balance} >= {reserved} + %s"
    )


@cache
def _add_reserved_sql(vendor: str) -> str:
    allowance = _column(UsagePeriod, "allowance_reserved")
    paid = _column(UsagePeriod, "paid_reserved")
    return (
        f"UPDATE {_table(UsagePeriod)} SET {allowance} = {allowance} + %s, "  # noqa: S608
        f"{paid} = {paid} + %s WHERE {_column(UsagePeriod, 'id')} = %s "
        f"AND (%s <> 0 OR %s <> 0)"
    )


@cache
def _insert_sql(model: type[Model], vendor: str) -> tuple[str, tuple[Field, ...]]:
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {_table(model)} ({columns}) VALUES ({placeholders})"  # noqa: S608
    return sql, fields


@cache
def _reserve_sql(vendor: str) -> str:
    """Holding, counting and the ledger entry as one statement: PostgreSQL runs every
    data-modifying WITH part exactly once, whether or not the final SELECT reads it."""
    insert, _ = _insert_sql(UsageRecord, vendor)
    pk = _column(UsageRecord, "id")
    return (
        f"WITH held AS ({_hold_credits_sql(vendor)} RETURNING 1), "  # noqa: S608
        f"counted AS ({_add_reserved_sql(vendor)} RETURNING 1), "
        f"entry AS ({insert} RETURNING {pk}) "
        f"SELECT entry.{pk}, (SELECT count(*) FROM held) FROM entry"
    )


def _parameters(record: UsageRecord, reservation: Reservation) -> dict[str, list[object]]:
    _, fields = _insert_sql(UsageRecord, connection.vendor)
    amount = reservation.credits
    allowance, paid = reservation.allowance, reservation.paid
    return {
        "hold": [amount, reservation.account_id, amount],
        "count": [allowance, paid, reservation.period_id, allowance, paid],
        "entry": [f.get_db_prep_save(f.pre_save(record, add=True), connection) for f in fields],
    }


def write_reservation(record: UsageRecord, reservation: Reservation) -> bool:
    """Holds the call's credits, adds its reservation to its period's counters (the row
    is locked) and appends its ledger entry `record`; False when the balance no longer
    covers the credits, and the caller must roll the transaction back (on PostgreSQL
    the other two writes have happened: they are one round trip, inside the lock every
    admission of the org waits for)."""
    parameters = _parameters(record, reservation)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            values = parameters["hold"] + parameters["count"] + parameters["entry"]
            cursor.execute(_reserve_sql(connection.vendor), values)
            record.pk, held = cursor.fetchone()
        else:
            held = _write_one_by_one(cursor, parameters)
            record.pk = cursor.lastrowid
    _mark_saved(record)
    return reservation.account_id is None or held == 1


def _write_one_by_one(cursor: CursorWrapper, parameters: dict[str, list[object]]) -> int:
    cursor.execute(_hold_credits_sql(connection.vendor), parameters["hold"])
    held = cursor.rowcount
    cursor.execute(_add_reserved_sql(connection.vendor), parameters["count"])
    cursor.execute(_insert_sql(UsageRecord, connection.vendor)[0], parameters["entry"])
    return held


def insert_record(record: UsageRecord) -> UsageRecord:
    """Appends an unmetered ledger entry (billing off: nothing to hold or count)."""
    sql, fields = _insert_sql(UsageRecord, connection.vendor)
    values = [f.get_db_prep_save(f.pre_save(record, add=True), connection) for f in fields]
    with connection.cursor() as cursor:
        if connection.features.can_return_columns_from_insert:
            cursor.execute(f"{sql} RETURNING {_column(UsageRecord, 'id')}", values)
            record.pk = cursor.fetchone()[0]
        else:
            cursor.execute(sql, values)
            record.pk = cursor.lastrowid
    _mark_saved(record)
    return record


def _mark_saved(record: UsageRecord) -> None:
    # Entries are never saved twice: the ledger is append-only, and nothing listens to
    # their signals.
    record._state.adding = False
    record._state.db = connection.alias
