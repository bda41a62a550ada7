"""What a worker process does once at start, before its pool forks."""

from __future__ import annotations

import subprocess
import sys

from celery.signals import worker_init

from portal import celery

PROBE = """
import gc, sys
import django
django.setup()
from portal.celery import load_runners_and_freeze
assert "torch" not in sys.modules
load_runners_and_freeze()
print("torch" in sys.modules, "transformers" in sys.modules, gc.get_freeze_count() > 0)
"""


def test_the_worker_loads_the_runners_and_freezes_them_before_forking():
    assert celery.load_runners_and_freeze in [ref() for _, ref in worker_init.receivers]
    # In a process of its own: freezing the test process would keep its garbage forever.
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split() == ["True", "True", "True"], result.stderr
