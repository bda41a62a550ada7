"""Input that must never cause a 5xx or poison later reads (issue #11, items 9 and 10).

Every JSON entry point refuses, at parse time, what the database cannot store or a later
read cannot encode (NUL, unpaired surrogates), what is not JSON (NaN, Infinity, numbers
that overflow) and absurd nesting: a 400 that stores nothing. No worker runs here, so a
body that passes every check ends at the 503 `no_worker` answer before anything is stored.
"""

from __future__ import annotations

import json
import math

import pytest
from django.db import DataError, transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.settings import api_settings

from inference.models import Prediction, Source
from models_hub.demo import load_demo_catalog

pytestmark = pytest.mark.django_db

DEEP = 100_000

# Raw JSON text, spliced into otherwise valid bodies (json.dumps cannot write most of them).
NASTY = {
    "nul": '"a\\u0000b"',
    "lone_high_surrogate": '"a\\ud800b"',
    "lone_low_surrogate": '"\\udc00"',
    "nan": "NaN",
    "infinity": "Infinity",
    "minus_infinity": "-Infinity",
    "float_overflow": "1e999",
    "huge_int": str(10**400),
    "deep_list": "[" * DEEP + "]" * DEEP,
    "deep_object": '{"a":' * DEEP + "1" + "}" * DEEP,
}

# Each endpoint: a body that passes every check, and the JSON types each field accepts.
ENDPOINTS = {
    "/api/v1/predictions": (
        {
            "model": "echo",
            "input": {
                "prompt": "hi",
                "max_new_tokens": 4,
                "temperature": 0.5,
                "top_p": 0.9,
                "stop": ["x"],
                "seed": 1,
            },
            "stream": False,
            "webhook": "",
            "webhook_events_filter": ["completed"],
        },
        {
            "model": {"string"},
            "input": {"object"},
            "input.prompt": {"string"},
            "input.max_new_tokens": {"integer"},
            "input.temperature": {"integer", "number"},
            "input.top_p": {"integer", "number"},
            "input.stop": {"array"},
            "input.seed": {"integer"},
            "stream": {"boolean"},
            "webhook": {"string"},
            "webhook_events_filter": {"array"},
        },
    ),
    "/v1/chat/completions": (
        {
            "model": "echo",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": "x",
            "seed": 1,
            "n": 1,
            "stream": False,
            "stream_options": {"include_usage": True},
        },
        {
            "model": {"string"},
            "messages": {"array"},
            "messages.0": {"object"},
            "messages.0.role": {"string"},
            "messages.0.content": {"string"},
            "max_tokens": {"integer", "null"},
            "temperature": {"integer", "number", "null"},
            "top_p": {"integer", "number", "null"},
            "stop": {"string", "array", "null"},
            "seed": {"integer", "null"},
            "n": {"integer", "null"},
            "stream": {"boolean", "null"},
            "stream_options": {"object", "null"},
        },
    ),
    "/v1/completions": (
        {
            "model": "echo",
            "prompt": "hi",
            "max_tokens": 4,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": ["x"],
            "seed": 1,
            "n": 1,
            "stream": False,
        },
        {
            "model": {"string"},
            "prompt": {"string"},
            "max_tokens": {"integer", "null"},
            "temperature": {"integer", "number", "null"},
            "top_p": {"integer", "number", "null"},
            "stop": {"string", "array", "null"},
            "seed": {"integer", "null"},
            "n": {"integer", "null"},
            "stream": {"boolean", "null"},
        },
    ),
    "/v1/embeddings": (
        {"model": "all-minilm-l6-v2", "input": ["hi"], "encoding_format": "float"},
        {
            "model": {"string"},
            "input": {"string", "array"},
            "input.0": {"string"},
            "encoding_format": {"string", "null"},
        },
    ),
}

# One value of each JSON type, for the wrong-type cases.
TYPED_VALUES = {
    "object": '{"k": "v"}',
    "array": '["v"]',
    "string": '"v"',
    "integer": "7",
    "number": "7.5",
    "boolean": "true",
    "null": "null",
}
# The same integer as an already-valid value would not be a wrong type, nor would 7.5 for a
# field that takes numbers: integers are numbers in JSON Schema.
SUBTYPES = {"number": {"integer"}}

MARK = "\x1f"  # the placeholder a raw value replaces; never in a real body


def body_with(body: dict, path: str, raw: str) -> str:
    """The body as JSON text with the field at `path` (dots; digits index lists) set to the
    raw JSON text `raw`."""
    copy = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    target = copy
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = MARK
    return json.dumps(copy).replace(json.dumps(MARK), raw)


def wrong_types(accepted: set[str]) -> list[str]:
    allowed = set(accepted)
    for general, specific in SUBTYPES.items():
        if general in allowed:
            allowed |= specific
    return [kind for kind in TYPED_VALUES if kind not in allowed]


@pytest.fixture
def caller(org, token_for) -> Client:
    load_demo_catalog()
    return Client(headers={"Authorization": f"Bearer {token_for(org)}"})


def post(client: Client, path: str, raw: str):
    return client.post(path, data=raw, content_type="application/json")


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_the_valid_bodies_get_past_every_check(caller, path):
    """The baseline: without it every refusal below could be the base body's fault."""
    body, _ = ENDPOINTS[path]
    response = post(caller, path, json.dumps(body))
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "no_worker"


def refusals_missing(client: Client, path: str, cases: dict[str, str]) -> list[str]:
    """The cases (name -> raw body) that did not answer a 4xx in the error shape."""
    missing = []
    for name, raw in cases.items():
        response = post(client, path, raw)
        shaped = response["Content-Type"].startswith("application/json") and set(
            response.json().get("error", {})
        ) == {"type", "code", "message", "param"}
        if not (400 <= response.status_code < 500 and shaped):
            missing.append(f"{name}: {response.status_code} {response.content[:200]!r}")
    return missing


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_a_nasty_value_in_any_field_is_4xx_and_stores_nothing(caller, path):
    body, fields = ENDPOINTS[path]
    cases = {
        f"{field}={kind}": body_with(body, field, raw)
        for field in fields
        for kind, raw in NASTY.items()
    }
    assert refusals_missing(caller, path, cases) == []
    assert not Prediction.objects.exists()


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_a_wrong_type_in_any_field_is_4xx_and_stores_nothing(caller, path):
    body, fields = ENDPOINTS[path]
    cases = {
        f"{field}={kind}": body_with(body, field, TYPED_VALUES[kind])
        for field, accepted in fields.items()
        for kind in wrong_types(accepted)
    }
    assert refusals_missing(caller, path, cases) == []
    assert not Prediction.objects.exists()


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_a_nasty_whole_body_is_400(caller, path):
    raws = [*NASTY.values(), "\ufeff{}", "{", "", "[]", '{"a": 1} x']
    for raw in raws:
        response = post(caller, path, raw)
        assert response.status_code == 400, (raw[:20], response.content[:300])
        assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_invalid_utf8_is_400(caller, path):
    response = caller.post(path, data=b'{"model": "\xff"}', content_type="application/json")
    assert response.status_code == 400, response.content[:300]


def test_surrogate_and_nan_messages_name_the_problem(caller):
    surrogate = post(caller, "/api/v1/predictions", '{"model": "echo", "input": "\\ud800"}')
    assert surrogate.json()["error"]["code"] == "malformed_json"
    assert "surrogate" in surrogate.json()["error"]["message"]
    chat_body = ENDPOINTS["/v1/chat/completions"][0]
    nan = post(caller, "/v1/chat/completions", body_with(chat_body, "temperature", "NaN"))
    assert nan.json()["error"]["code"] == "malformed_json"
    assert "NaN" in nan.json()["error"]["message"]


def test_a_proper_surrogate_pair_is_accepted(caller):
    """An emoji outside the BMP arrives escaped as a pair: that is valid text."""
    raw = '{"model": "echo", "input": {"prompt": "smile \\ud83d\\ude00"}}'
    assert post(caller, "/api/v1/predictions", raw).status_code == 503
    raw = '{"model": "echo", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'
    assert post(caller, "/v1/chat/completions", raw).status_code == 503


# Any JSON-ish value, with what json.dumps can write but JSON should not carry: NaN,
# +-Infinity, unpaired surrogates (escaped), NUL, huge integers.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(exclude_categories=()), max_size=20)
    # Drawn rarely by the strategies above: a branch of their own.
    | st.sampled_from([math.nan, math.inf, -math.inf, "\ud800", "a\udc00", "\x00", 10**400]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(st.characters(exclude_categories=()), max_size=8), children,
                      max_size=4),
    max_leaves=12,
)  # fmt: skip
FIELDS = [(path, field) for path, (_, fields) in ENDPOINTS.items() for field in fields]


def unstorable(value) -> bool:
    """Whether `value` holds what no JSON entry point may accept (the property's oracle)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return "\x00" in value or any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(unstorable(key) or unstorable(item) for key, item in value.items())
    if isinstance(value, list):
        return any(unstorable(item) for item in value)
    return False


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(target=st.sampled_from(FIELDS), value=JSON_VALUES)
def test_generated_values_in_any_field_never_cause_a_5xx(caller, target, value):
    """Property: whatever value lands in whatever field, the answer is a 4xx, or the 503
    that a valid body gets here (no worker); a value JSON may not carry is always a 400;
    and nothing is stored."""
    path, field = target
    raw = body_with(ENDPOINTS[path][0], field, json.dumps(value))
    response = post(caller, path, raw)
    if unstorable(value):
        assert response.status_code == 400, (field, response.content[:300])
    else:
        assert response.status_code < 500 or response.json()["error"]["code"] == "no_worker", (
            field,
            response.content[:300],
        )
    assert not Prediction.objects.exists()


# --- One stored row never breaks a list --------------------------------------------------


def test_postgres_refuses_to_store_a_lone_surrogate(org):
    """Why the API test below goes through the renderer: the row cannot exist here."""
    with pytest.raises((DataError, UnicodeEncodeError)), transaction.atomic():
        Prediction.objects.create(
            org=org, model=load_demo_catalog()[0], input={"prompt": "a\ud800b"}, source=Source.API
        )


def test_the_api_renders_unencodable_text_with_replacement_characters():
    """SQLite (the embedded default) stores such text; a read of it answers 200, not 500."""
    renderer = api_settings.DEFAULT_RENDERER_CLASSES[0]()
    data = {"results": [{"input": {"prompt": "a\ud800b", "k\udc00": ["\udfff"]}, "n": 1.5}]}
    rendered = renderer.render(data, "application/json", {})
    assert json.loads(rendered.decode("utf-8")) == {
        "results": [{"input": {"prompt": "a\ufffdb", "k\ufffd": ["\ufffd"]}, "n": 1.5}]
    }
