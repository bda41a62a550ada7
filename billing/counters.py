"""The statements every paid admission runs on the money counters (the org's period row
and its billing account), written once as SQL instead of built by the ORM per call.

Building, compiling and instantiating these through the ORM cost more than running them:
about 1.5 ms of CPU per admission, a third of the admission's throughput with money on
(bench/admission.py). The SQL is plain enough for PostgreSQL and SQLite; table and
column names come from the models, so a rename cannot leave it behind; every value is
a query parameter (hence the S608 exemptions).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import cache

from django.db import connection

from billing.models import BillingAccount, UsagePeriod

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


def lock_period(org_id: int, start: datetime) -> tuple[UsagePeriod, BillingAccount | None] | None:
    """The org's period row starting at `start`, locked until the transaction ends, and
    the org's billing account as of then (not locked: credits only ever change by
    conditional UPDATE); None if the period has no row yet."""
    sql = _lock_period_sql(connection.vendor)
    rows = UsagePeriod.objects.raw(sql, [org_id, start])
    period = next(iter(rows), None)
    if period is None:
        return None
    if period.account_id is None:
        return period, None
    account = BillingAccount(
        id=period.account_id,
        org_id=org_id,
        balance=_decimal(period.account_balance),
        credits_reserved=_decimal(period.account_credits_reserved),
        spend_cap=_decimal(period.account_spend_cap),
    )
    return period, account


def _decimal(value: object) -> Decimal | None:
    # Extra columns of a raw query skip the field's converter (SQLite returns numbers).
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(str(value))


@cache
def _add_reserved_sql(vendor: str) -> str:
    allowance = _column(UsagePeriod, "allowance_reserved")
    paid = _column(UsagePeriod, "paid_reserved")
    return (
        f"UPDATE {_table(UsagePeriod)} SET {allowance} = {allowance} + %s, "  # noqa: S608
        f"{paid} = {paid} + %s WHERE {_column(UsagePeriod, 'id')} = %s"
    )


def add_reserved(period_id: int, allowance: Decimal, paid: Decimal) -> None:
    """Adds a call's reservation to its period's counters (the row is locked)."""
    with connection.cursor() as cursor:
        cursor.execute(_add_reserved_sql(connection.vendor), [allowance, paid, period_id])


@cache
def _hold_credits_sql(vendor: str) -> str:
    reserved = _column(BillingAccount, "credits_reserved")
    balance = _column(BillingAccount, "balance")
    return (
        f"UPDATE {_table(BillingAccount)} SET {reserved} = {reserved} + %s "  # noqa: S608
        f"WHERE {_column(BillingAccount, 'id')} = %s AND {balance} >= {reserved} + %s"
    )


def hold_credits(account_id: int, amount: Decimal) -> bool:
    """Holds `amount` of the account's credits if its balance covers everything held;
    False (nothing changed) if not."""
    with connection.cursor() as cursor:
        cursor.execute(_hold_credits_sql(connection.vendor), [amount, account_id, amount])
        return cursor.rowcount == 1
