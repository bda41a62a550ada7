"""The real stack for integration tests: an ASGI server and Celery worker processes that
share the test database and a Redis database with the test process.

The machinery lives in tests/livestack.py, shared with the browser tests (tests/e2e);
its names are re-exported here for the tests that import them from this module."""

from __future__ import annotations

import pytest

from tests.livestack import (
    ROOT,
    STACK_LEASE_SECONDS,
    START_TIMEOUT_SECONDS,
    Stack,
    Worker,
    free_port,
    running_stack,
    stack_env,
    wait_until,
)

__all__ = [
    "ROOT",
    "STACK_LEASE_SECONDS",
    "START_TIMEOUT_SECONDS",
    "Stack",
    "Worker",
    "free_port",
    "stack",
    "stack_env",
    "wait_until",
]


@pytest.fixture(scope="session")
def stack(django_db_setup, django_db_blocker):
    with running_stack(django_db_blocker) as running:
        yield running
