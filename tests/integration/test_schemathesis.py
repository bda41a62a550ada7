"""Property-based requests generated from the served OpenAPI schema against the live stack:
no 5xx, and every response conforms to the schema (a bounded number of examples per
operation). Runs the schemathesis CLI, as a developer would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from models_hub.demo import load_demo_catalog
from models_hub.models import ModelListing
from models_hub.versions import ensure_current_version

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
EXAMPLES_PER_OPERATION = 8
TIME_BUDGET_SECONDS = 300
# Generated requests may ask a real model for its maximum output; a small cap keeps a
# CPU-only run bounded while every request still goes through the real model.
GENERATION_CAP = {"max_new_tokens": 8}
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


@pytest.mark.timeout(TIME_BUDGET_SECONDS + 180)
def test_every_api_operation_conforms_to_the_schema(stack, org, token_for):
    load_demo_catalog()
    ModelListing.objects.filter(task="text-generation").update(
        max_params=GENERATION_CAP, default_params=GENERATION_CAP
    )
    for listing in ModelListing.objects.filter(task="text-generation"):
        ensure_current_version(listing)  # callers run versions: publish the capped ones
    result = subprocess.run(
        [
            SCHEMATHESIS, "run", f"{stack.base_url}/api/schema/",
            "--header", f"Authorization: Bearer {token_for(org)}",
            "--include-path-regex", "^/(api/)?v1/",
            "--max-examples", str(EXAMPLES_PER_OPERATION),
            "--checks", "not_a_server_error,status_code_conformance,"
            "content_type_conformance,response_schema_conformance",
            "--request-timeout", "60", "--workers", "1",
            # Under the per-address limit, or its 429s leave operations untested.
            "--rate-limit", f"{settings.IP_RATE_LIMIT_PER_MINUTE * 3 // 4}/m",
            "--max-time", str(TIME_BUDGET_SECONDS),
        ],
        capture_output=True, text=True, timeout=TIME_BUDGET_SECONDS + 120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
