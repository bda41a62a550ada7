"""On PostgreSQL the server binds the parameters, and a statement run often enough on one
connection is prepared there once (settings: DB_PREPARED_STATEMENTS, DB_PREPARE_THRESHOLD):
the spine runs the same statements on every call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


# A statement of this test's own, as the spine's hot statements are run (portal.sql).
STATEMENT = 'SELECT "name" FROM "portal_organization" WHERE "slug" = %s -- this test'


def _run_statement(slug: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(STATEMENT, [slug])
        return cursor.fetchone()[0]


def _prepared() -> list[str]:
    return [s for s in _prepared_statements() if "-- this test" in s]


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's own statements")
def test_a_statement_run_past_the_threshold_is_prepared_on_the_server(org):
    threshold = settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"]
    for _ in range(threshold):
        assert _run_statement(org.slug) == org.name
    assert _prepared() == []

    assert _run_statement(org.slug) == org.name  # prepared, and run from it
    assert _run_statement(org.slug) == org.name

    prepared = _prepared()
    # Bound by the server: the value is a parameter, not text in the statement.
    assert len(prepared) == 1 and "$1" in prepared[0] and org.slug not in prepared[0]


def _database_options(database_url: str, **env: str) -> dict:
    script = (
        "import json; from django.conf import settings; "
        "print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {})))"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/portal"


def test_postgresql_binds_on_the_server_and_prepares_by_default():
    options = _database_options(POSTGRES_URL)
    assert options["server_side_binding"] is True
    assert options["prepare_threshold"] == 5
    assert _database_options(POSTGRES_URL, DB_PREPARE_THRESHOLD="2")["prepare_threshold"] == 2


def test_behind_an_old_pooler_prepared_statements_can_be_turned_off():
    options = _database_options(POSTGRES_URL, DB_PREPARED_STATEMENTS="false")
    assert "server_side_binding" not in options and "prepare_threshold" not in options


def test_the_embedded_sqlite_default_has_neither(tmp_path):
    options = _database_options(f"sqlite:///{tmp_path / 'portal.sqlite3'}")
    assert "server_side_binding" not in options and "prepare_threshold" not in options
