"""Data migrations under test: their RunPython functions, found by name (migration numbers
change when branches merge, function names do not)."""

from __future__ import annotations

from collections.abc import Callable

from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations.special import RunPython


def run_python_step(app: str, name: str) -> Callable:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    for (label, _), migration in loader.disk_migrations.items():
        for operation in migration.operations if label == app else ():
            if isinstance(operation, RunPython) and operation.code.__name__ == name:
                return operation.code
    raise LookupError(f"{app}: no RunPython step named {name}")
