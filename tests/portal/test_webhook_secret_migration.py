"""The data migration re-issues every org's webhook secret in the Standard Webhooks form."""

from __future__ import annotations

import base64

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("portal", "0002_retention")]
AFTER = [("portal", "0003_webhook_secret_standard")]


def migrate(targets: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_old_urlsafe_secrets_are_reissued_in_the_standard_form():
    old_apps = migrate(BEFORE)
    Organization = old_apps.get_model("portal", "Organization")
    old = {"a": "whsec_" + "-_" * 21 + "x", "b": "whsec_Zm9v_-bar"}
    for slug, secret in old.items():
        Organization.objects.create(slug=slug, name=slug, webhook_secret=secret)
    try:
        new_apps = migrate(AFTER)
    finally:
        # Every app's latest state: going back to portal 0002 also unapplied the other
        # apps' migrations that depend on later portal ones.
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    secrets = dict(
        new_apps.get_model("portal", "Organization").objects.values_list("slug", "webhook_secret")
    )
    assert set(secrets) == {"a", "b"} and secrets["a"] != secrets["b"]
    for slug, secret in secrets.items():
        assert secret != old[slug] and secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    # The database is left as every later test expects it: fully migrated.
    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
