"""The model page's playground, server side: what fills its form (the example, or the input
of one of the viewer's own predictions via ?from=), the code its API tab shows, and the
browser libraries it loads."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from inference.models import Prediction, Status
from models_hub.models import ModelListing, Task, Visibility
from models_hub.playground import RUNNER_DEFAULTS, mode_for, playground_for
from models_hub.schemas import embeddings_schema
from portal import vendor

PREFILL = {"messages": [{"role": "user", "content": "a question only the org knows"}]}


@pytest.fixture
def chat(make_listing) -> ModelListing:
    return make_listing(
        "chat-model",
        example_input={"prompt": "the example", "max_new_tokens": 8},
        default_params={"temperature": 0.5},
    )


@pytest.fixture
def team_prediction(chat, org, owner) -> Prediction:
    return Prediction.objects.create(
        org=org, user=owner, model=chat, input=PREFILL, status=Status.SUCCEEDED
    )


def playground_input(response) -> dict:
    found = re.search(r'<script id="playground-example" type="application/json">(.*?)</script>',
                      response.content.decode(), re.S)  # fmt: skip
    assert found, "the page has no playground"
    return json.loads(found.group(1))


def normalized(response, *ids: str) -> str:
    text = response.content.decode()
    text = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "csrf", text)
    for value in ids:
        text = text.replace(value, "<ID>")
    return text


def page(client: Client, listing: ModelListing, prediction_id: str | None = None):
    query = {"from": prediction_id} if prediction_id is not None else {}
    response = client.get(reverse("model_detail", args=[listing.slug]), query)
    assert response.status_code == 200
    return response


# --- ?from=<prediction id> ----------------------------------------------------------------


def test_the_owner_and_a_teammate_get_the_org_s_prediction_input(
    chat, team_prediction, org, owner, teammate, client_for
):
    for user in (owner, teammate):
        response = page(client_for(user, org), chat, team_prediction.id)
        assert playground_input(response) == PREFILL, user
        assert response.context["playground"].from_prediction == team_prediction.id
        assert "Inputs from prediction" in response.content.decode()
        # The API tab's first code is the call these inputs make.
        assert "a question only the org knows" in response.context["playground_snippets"][0]["code"]


def test_another_org_s_prediction_is_exactly_a_missing_one(
    chat, team_prediction, outsider, outsider_org, client_for
):
    client = client_for(outsider, outsider_org)
    hidden = page(client, chat, team_prediction.id)
    missing = page(client, chat, "x" * len(team_prediction.id))
    plain = page(client, chat)
    assert playground_input(hidden) == chat.example_input
    assert "a question only the org knows" not in hidden.content.decode()
    assert hidden.context["playground"].from_prediction is None
    ids = (team_prediction.id, "x" * len(team_prediction.id))
    assert normalized(hidden, *ids) == normalized(missing, *ids) == normalized(plain, *ids)


def test_the_viewer_s_current_org_decides_not_the_user(chat, team_prediction, owner, client_for):
    """The owner working in their personal org sees the team's prediction as missing."""
    response = page(client_for(owner), chat, team_prediction.id)
    assert playground_input(response) == chat.example_input


def test_a_prediction_of_another_model_or_with_erased_data_gives_the_example(
    chat, make_listing, team_prediction, org, owner, client_for
):
    other = make_listing("other-model")
    client = client_for(owner, org)
    assert playground_input(page(client, other, team_prediction.id)) == other.example_input

    Prediction.objects.filter(pk=team_prediction.pk).update(
        input={}, data_removed_at=timezone.now()
    )
    assert playground_input(page(client, chat, team_prediction.id)) == chat.example_input


@pytest.mark.parametrize("value", ["", "\x00", "x" * 500, "../../etc", "1 OR 1=1"])
def test_odd_from_values_give_the_plain_playground(chat, org, owner, client_for, value):
    response = page(client_for(owner, org), chat, value)
    assert playground_input(response) == chat.example_input


def test_anonymous_visitors_get_no_prefill_and_a_log_in_link_that_keeps_it(chat, team_prediction):
    response = page(Client(), chat, team_prediction.id)
    body = response.content.decode()
    assert "playground-example" not in body and "a question only the org knows" not in body
    assert response.context["playground"].from_prediction is None
    assert "Log in</a> to try this model" in body


def test_prefill_logic_without_a_request(chat, team_prediction, org, outsider_org):
    assert playground_for(org, chat, team_prediction.id).input == PREFILL
    assert playground_for(outsider_org, chat, team_prediction.id).input == chat.example_input
    assert playground_for(None, chat, team_prediction.id).input == chat.example_input


# --- Mode and defaults --------------------------------------------------------------------


def test_chat_for_text_generation_with_messages_and_a_form_otherwise(chat, make_listing):
    embedder = make_listing(
        "embedder",
        task=Task.EMBEDDINGS,
        input_schema=embeddings_schema(),
        example_input={"input": ["a", "b"]},
        max_params={},
    )
    prompt_only = make_listing(
        "prompt-only",
        input_schema={"type": "object", "properties": {"prompt": {"type": "string"}}},
    )
    assert [mode_for(x) for x in (chat, embedder, prompt_only)] == ["chat", "form", "form"]


def test_sliders_show_what_the_runner_would_use(chat, org, owner, client_for):
    response = page(client_for(owner, org), chat)
    defaults = response.context["playground"].defaults
    # The listing's defaults first, then the runner's neutral values.
    assert defaults == {**RUNNER_DEFAULTS, "temperature": 0.5}
    assert 'data-mode="chat"' in response.content.decode()


# --- The prediction page's button ---------------------------------------------------------


def test_the_prediction_page_links_to_the_playground_with_its_input(
    chat, team_prediction, org, owner, client_for
):
    client = client_for(owner, org)
    url = reverse("prediction_detail", args=[team_prediction.id])
    body = client.get(url).content.decode()
    assert f'href="/models/{chat.slug}/?from={team_prediction.id}#playground"' in body
    assert "Open in playground with these inputs" in body

    Prediction.objects.filter(pk=team_prediction.pk).update(data_removed_at=timezone.now())
    assert "Open in playground" not in client.get(url).content.decode()


# --- The API tab's code -------------------------------------------------------------------


def post_snippets(client: Client, slug: str, body: object) -> object:
    url = reverse("playground_snippets", args=[slug])
    return client.post(url, json.dumps(body), content_type="application/json")


def test_the_api_tab_gets_code_for_the_input_it_posts(chat, org, owner, client_for):
    model_input = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "It's 'quoted'"},
        ],
        "max_new_tokens": 12,
        "temperature": 0.3,
    }
    response = post_snippets(client_for(owner, org), chat.slug, {"input": model_input})
    assert response.status_code == 200
    snippets = {s["key"]: s for s in response.json()["snippets"]}
    assert list(snippets) == ["curl", "python", "openai", "websocket"]
    for snippet in snippets.values():
        assert "MODEL_PORTAL_TOKEN" in snippet["code"]
        assert "http://testserver/" in snippet["code"]
    # The shell quoting of a single quote, and every parameter under the OpenAI SDK's names.
    assert "It'\\''s '\\''quoted'\\''" in snippets["curl"]["code"]
    openai = snippets["openai"]["code"]
    assert "max_tokens=12," in openai and "temperature=0.3," in openai
    assert '"content": "Be brief."' in openai


def test_the_api_tab_refuses_a_body_without_an_input_object(chat, org, owner, client_for):
    client = client_for(owner, org)
    for body in ({}, {"input": "text"}, [1], {"input": None}):
        assert post_snippets(client, chat.slug, body).status_code == 400, body
    url = reverse("playground_snippets", args=[chat.slug])
    assert client.post(url, "{not json", content_type="application/json").status_code == 400
    assert client.post(url, '{"input": NaN}', content_type="application/json").status_code == 400
    assert client.get(url).status_code == 405


def test_the_api_tab_of_another_org_s_private_model_is_a_404(
    make_listing, org, outsider, outsider_org, owner, client_for
):
    make_listing("acme-secret", org=org, visibility=Visibility.PRIVATE)
    outsider_client = client_for(outsider, outsider_org)
    hidden = post_snippets(outsider_client, "acme-secret", {"input": {}})
    missing = post_snippets(outsider_client, "no-such-model", {"input": {}})
    assert hidden.status_code == missing.status_code == 404
    assert post_snippets(client_for(owner, org), "acme-secret", {"input": {}}).status_code == 200


def test_the_api_tab_needs_a_signed_in_member(chat):
    response = post_snippets(Client(), chat.slug, {"input": {}})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


# --- Browser libraries --------------------------------------------------------------------


def test_only_the_listed_library_files_are_served():
    for name in vendor.sources():
        assert finders.find(name), f"{name}: run `make install` (npm ci)"
    listed = {
        f"{storage.prefix}/{path}"
        for finder in finders.get_finders()
        if isinstance(finder, vendor.VendorFinder)
        for path, storage in finder.list(None)
    }
    assert listed == set(vendor.sources())
    assert finders.find("vendor/highlight.js") in (None, [])  # the package's other builds


def test_a_missing_install_is_a_warning_that_says_what_to_run(settings, tmp_path: Path):
    settings.BASE_DIR = tmp_path
    warnings = vendor.VendorFinder().check()
    assert [w.id for w in warnings] == ["portal.W010"]
    assert "make install" in warnings[0].hint
    assert vendor.VendorFinder().find("vendor/marked.umd.js") == []


def test_the_sliders_neutral_values_are_the_runner_s(chat):
    """RUNNER_DEFAULTS copies what the runner falls back to (the web imports no runner)."""
    from inference.runners.text_generation import resolve_params

    bare = dataclasses.replace(chat.runtime_spec, default_params={}, max_params={})
    params = resolve_params(bare, {"prompt": "hi"})
    assert {
        "max_new_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    } == RUNNER_DEFAULTS
