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

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Model

from billing.models import BillingAccount, CallCost, UsagePeriod, UsageRecord
from portal.models import Organization
from portal.sql import column, insert, insert_sql, insert_values, instance, mark_saved, table

ACCOUNT_FIELDS = ("id", "balance", "credits_reserved", "spend_cap")


@cache
def _lock_period_sql(vendor: str) -> str:
    account_columns = ", ".join(
        f"a.{column(BillingAccount, name)} AS account_{name}" for name in ACCOUNT_FIELDS
    )
    org, start = column(UsagePeriod, "org"), column(UsagePeriod, "start")
    return (
        f"SELECT {_columns('p', UsagePeriod)}, {account_columns} "  # noqa: S608
        f"FROM {table(UsagePeriod)} p "
        f"LEFT JOIN {table(BillingAccount)} a ON a.{column(BillingAccount, 'org')} = p.{org} "
        f"WHERE p.{org} = %s AND p.{start} = %s{_lock_clause()}"
    )


@cache
def _period_id_sql(vendor: str) -> str:
    org, start = column(UsagePeriod, "org"), column(UsagePeriod, "start")
    return (
        f"SELECT {column(UsagePeriod, 'id')} FROM {table(UsagePeriod)} "  # noqa: S608
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
    period = instance(UsagePeriod, fields, row[: len(fields)])
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
    reserved = column(BillingAccount, "credits_reserved")
    balance = column(BillingAccount, "balance")
    return (
        f"UPDATE {table(BillingAccount)} SET {reserved} = {reserved} + %s "  # noqa: S608
        f"WHERE {column(BillingAccount, 'id')} = %s AND {balance} >= {reserved} + %s"
    )


@cache
def _add_reserved_sql(vendor: str) -> str:
    allowance = column(UsagePeriod, "allowance_reserved")
    paid = column(UsagePeriod, "paid_reserved")
    return (
        f"UPDATE {table(UsagePeriod)} SET {allowance} = {allowance} + %s, "  # noqa: S608
        f"{paid} = {paid} + %s WHERE {column(UsagePeriod, 'id')} = %s "
        f"AND (%s <> 0 OR %s <> 0)"
    )


@cache
def _reserve_sql(vendor: str) -> str:
    """Holding, counting and the ledger entry as one statement: PostgreSQL runs every
    data-modifying WITH part exactly once, whether or not the final SELECT reads it."""
    entry, _ = insert_sql(UsageRecord, vendor)
    pk = column(UsageRecord, "id")
    return (
        f"WITH held AS ({_hold_credits_sql(vendor)} RETURNING 1), "  # noqa: S608
        f"counted AS ({_add_reserved_sql(vendor)} RETURNING 1), "
        f"entry AS ({entry} RETURNING {pk}) "
        f"SELECT entry.{pk}, (SELECT count(*) FROM held) FROM entry"
    )


def _parameters(record: UsageRecord, reservation: Reservation) -> dict[str, list[object]]:
    _, fields = insert_sql(UsageRecord, connection.vendor)
    amount = reservation.credits
    allowance, paid = reservation.allowance, reservation.paid
    return {
        "hold": [amount, reservation.account_id, amount],
        "count": [allowance, paid, reservation.period_id, allowance, paid],
        "entry": insert_values(record, fields),
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
    mark_saved(record)
    return reservation.account_id is None or held == 1


def _write_one_by_one(cursor: CursorWrapper, parameters: dict[str, list[object]]) -> int:
    cursor.execute(_hold_credits_sql(connection.vendor), parameters["hold"])
    held = cursor.rowcount
    cursor.execute(_add_reserved_sql(connection.vendor), parameters["count"])
    cursor.execute(insert_sql(UsageRecord, connection.vendor)[0], parameters["entry"])
    return held


def insert_record(record: UsageRecord) -> UsageRecord:
    """Appends an unmetered ledger entry (billing off: nothing to hold or count)."""
    return insert(record)


# --- Settlement ------------------------------------------------------------------------


def _lock_clause() -> str:
    if connection.features.has_select_for_update_of:
        return " FOR UPDATE OF p"
    if connection.features.has_select_for_update:
        return " FOR UPDATE"
    return ""  # SQLite: its IMMEDIATE transactions already serialize writers


def _columns(alias: str, model: type[Model]) -> str:
    return ", ".join(
        f"{alias}.{connection.ops.quote_name(f.column)}" for f in model._meta.concrete_fields
    )


@cache
def _entry_sql(vendor: str) -> str:
    prediction, period, org = (
        column(UsageRecord, name) for name in ("prediction", "period", "org")
    )
    settled = (
        f"EXISTS (SELECT 1 FROM {table(CallCost)} c "  # noqa: S608
        f"WHERE c.{column(CallCost, 'prediction')} = r.{prediction})"
    )
    return (
        f"SELECT {_columns('r', UsageRecord)}, {_columns('o', Organization)}, "  # noqa: S608
        f"{settled} FROM {table(UsageRecord)} r "
        f"JOIN {table(UsagePeriod)} p ON p.{column(UsagePeriod, 'id')} = r.{period} "
        f"JOIN {table(Organization)} o ON o.{column(Organization, 'id')} = r.{org} "
        f"WHERE r.{prediction} = %s{_lock_clause()}"
    )


def lock_entry(prediction_id: str) -> tuple[UsageRecord, bool] | None:
    """A call's ledger entry (its org loaded with it), with its period locked until the
    transaction ends, and whether the call is settled already; None if it has no entry."""
    with connection.cursor() as cursor:
        cursor.execute(_entry_sql(connection.vendor), [prediction_id])
        row = cursor.fetchone()
    if row is None:
        return None
    record_fields = UsageRecord._meta.concrete_fields
    org_fields = Organization._meta.concrete_fields
    record = instance(UsageRecord, record_fields, row[: len(record_fields)])
    record.org = instance(Organization, org_fields, row[len(record_fields) : -1])
    return record, bool(row[-1])


@dataclass(frozen=True)
class Settlement:
    """What a settled call takes off its period's reservations and adds to its usage."""

    allowance_reserved: Decimal
    paid_reserved: Decimal
    allowance_used: Decimal
    credits_used: Decimal
    overage_used: Decimal
    requests: int
    input_tokens: int
    output_tokens: int


# (column, sign) in Settlement's order: reservations are released, usage is added.
_SETTLEMENT_SIGNS = (
    ("allowance_reserved", "-"),
    ("paid_reserved", "-"),
    ("allowance_used", "+"),
    ("credits_used", "+"),
    ("overage_used", "+"),
    ("requests", "+"),
    ("input_tokens", "+"),
    ("output_tokens", "+"),
)


@cache
def _settle_period_sql(vendor: str) -> str:
    assignments = ", ".join(
        f"{column(UsagePeriod, name)} = {column(UsagePeriod, name)} {sign} %s"
        for name, sign in _SETTLEMENT_SIGNS
    )
    return (
        f"UPDATE {table(UsagePeriod)} SET {assignments} "  # noqa: S608
        f"WHERE {column(UsagePeriod, 'id')} = %s"
    )


def settle_period(period_id: int, settlement: Settlement) -> None:
    """Applies `settlement` to the period's counters (the row is locked)."""
    values = [getattr(settlement, name) for name, _ in _SETTLEMENT_SIGNS]
    with connection.cursor() as cursor:
        cursor.execute(_settle_period_sql(connection.vendor), [*values, period_id])
