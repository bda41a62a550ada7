"""Giving a thread's database connection back to the pool before a long wait."""

from __future__ import annotations

from django.db import connection


def give_back_db_connection() -> None:
    """Returns the calling thread's database connection to the pool, so that a wait or a
    stream does not hold it. Inside a transaction it cannot be given back: a request has
    none open at these points, only a test that wraps everything in one does."""
    if not connection.in_atomic_block:
        connection.close()
