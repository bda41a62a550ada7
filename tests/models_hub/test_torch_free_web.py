"""The web process validates inputs, token counts included, without torch or transformers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from inference import loading
from inference.tokenizing import token_counter
from tests.inference.helpers import demo_spec

ROOT = Path(__file__).resolve().parents[2]
# A fresh interpreter: this test process has long imported torch.
WEB_PROCESS = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
import django
django.setup()
import portal.asgi
from django.urls import get_resolver
get_resolver().url_patterns

from models_hub.demo import DEMO_LISTINGS
from models_hub.models import ModelListing
from models_hub.validation import validate_input
from portal.errors import InvalidInput

entry = next(item for item in DEMO_LISTINGS if item["slug"] == "smollm2-135m-instruct")
listing = ModelListing(**{key: value for key, value in entry.items() if key != "tags"})
messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
validate_input(listing, {"messages": messages, "max_new_tokens": 16})
try:
    validate_input(listing, {"messages": [{"role": "user", "content": "hi " * 3000}]})
except InvalidInput as exc:
    print(exc.message)
print(sorted(name for name in ("torch", "transformers") if name in sys.modules))
"""


def test_the_web_process_counts_tokens_without_torch():
    spec = demo_spec("smollm2-135m-instruct")
    loading.pretrained_args(spec.source, spec.revision)  # the worker's GGUF conversion
    assert token_counter(spec) is not None  # so the web really counts, not skips
    done = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    refusal, loaded = done.stdout.strip().splitlines()[-2:]
    assert refusal.startswith("input.messages is 3")
    assert refusal.endswith("tokens; this model's context is 2048 tokens.")
    assert loaded == "[]"
