"""The predictions list (filters, previews) and a prediction's page, drawn by task."""

from __future__ import annotations

import html
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from inference.models import Prediction, Source, Status
from inference.presentation import input_preview
from models_hub.demo import load_demo_catalog

pytestmark = pytest.mark.django_db
EMBEDDER = "all-minilm-l6-v2"
CLASSIFIER = "minilm-zero-shot-classifier"


@pytest.fixture
def catalog():
    return {listing.slug: listing for listing in load_demo_catalog()}


@pytest.fixture
def make(catalog, owner):
    def create(org, slug="echo", **fields) -> Prediction:
        fields.setdefault("input", {"prompt": "hi"})
        fields.setdefault("status", Status.SUCCEEDED)
        return Prediction.objects.create(org=org, user=owner, model=catalog[slug], **fields)

    return create


def listed(client, query: str = "") -> str:
    response = client.get(f"/predictions/{query}")
    assert response.status_code == 200
    return response.content.decode()


def test_filters_by_model_status_and_source_within_the_org(make, org, owner, teammate, client_for):
    echo_api = make(org, input={"prompt": "echo over the api"})
    echo_failed = make(org, status=Status.FAILED, source=Source.PLAYGROUND)
    embedded = make(org, EMBEDDER, input={"input": ["a", "b", "c"]}, source=Source.OPENAI)
    for member in (owner, teammate):
        client = client_for(member, org)
        page = listed(client)
        assert all(p.id in page for p in (echo_api, echo_failed, embedded))
        by_model = listed(client, f"?model={EMBEDDER}")
        assert embedded.id in by_model and echo_api.id not in by_model
        by_status = listed(client, "?status=failed")
        assert echo_failed.id in by_status and echo_api.id not in by_status
        by_source = listed(client, "?source=openai")
        assert embedded.id in by_source and echo_failed.id not in by_source
        both = listed(client, "?model=echo&source=playground")
        assert echo_failed.id in both and echo_api.id not in both and embedded.id not in both
        assert f'<option value="{EMBEDDER}" selected>' in by_model


def test_another_orgs_predictions_never_appear(
    make, org, outsider_org, outsider, owner, client_for
):
    ours = make(org, input={"prompt": "our secret prompt"})
    theirs = make(outsider_org, CLASSIFIER, input={"text": "their secret text"})
    mine = listed(client_for(owner, org), f"?model={CLASSIFIER}")
    # Their model is no choice of ours: the filter is ignored, and still only ours show.
    assert ours.id in mine and theirs.id not in mine and "their secret text" not in mine
    assert f'value="{CLASSIFIER}"' not in mine
    outsiders = listed(client_for(outsider, outsider_org), "?model=echo")
    assert theirs.id in outsiders and ours.id not in outsiders
    assert "our secret prompt" not in outsiders


@pytest.mark.parametrize(
    "query", ["?status=bogus", "?source=email", "?model=no-such-model", "?model=%00", "?page=x"]
)
def test_bad_filter_values_are_ignored(make, org, owner, client_for, query):
    prediction = make(org)
    page = listed(client_for(owner, org), query)
    assert prediction.id in page
    filters = page[
        page.index('id="prediction-filters"') : page.index(
            "</form>", page.index('id="prediction-filters"')
        )
    ]
    assert "selected>" not in filters  # every filter shows "any"


def test_pages_keep_the_filters(make, org, owner, client_for):
    for _ in range(26):
        make(org, status=Status.FAILED)
    page = listed(client_for(owner, org), "?status=failed")
    assert "?status=failed&amp;page=2" in page
    second = listed(client_for(owner, org), "?status=failed&page=2")
    assert "Page 2 of 2" in second


def test_list_shows_model_input_preview_source_duration(make, org, owner, client_for):
    now = timezone.now()
    chat = make(
        org,
        input={"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "the follow-up " + "x" * 200},
        ]},
        source=Source.OPENAI,
    )  # fmt: skip
    Prediction.objects.filter(pk=chat.pk).update(
        created_at=now - timedelta(seconds=2.5), completed_at=now
    )
    make(org, EMBEDDER, input={"input": ["a", "b", "c"]})
    make(org, CLASSIFIER, input={"text": "classify me"})
    page = listed(client_for(owner, org))
    preview = "the follow-up " + "x" * 65 + "…"
    assert preview in page and "first question" not in page
    assert "3 texts" in page and "classify me" in page
    assert "2.50 s" in page and ">openai<" in page
    assert "<time datetime=" in page


def detail(client, prediction: Prediction) -> str:
    response = client.get(f"/predictions/{prediction.id}/")
    assert response.status_code == 200
    return response.content.decode()


def test_text_generation_chat_input_thread_and_markdown_output(make, org, teammate, client_for):
    prediction = make(
        org,
        input={"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say <b>hi</b>"},
        ], "max_new_tokens": 12},
        output="**Hello** <script>alert(1)</script>",
    )  # fmt: skip
    page = detail(client_for(teammate, org), prediction)
    assert 'class="message message-system"' in page and 'class="message message-user"' in page
    assert "Say &lt;b&gt;hi&lt;/b&gt;" in page  # shown as typed, never as HTML
    assert "<code>max_new_tokens</code></dt><dd><code>12</code>" in page
    assert 'id="output-text" data-markdown>**Hello** &lt;script&gt;' in page
    assert 'id="output-raw">**Hello** &lt;script&gt;' in page
    assert "<script>alert(1)</script>" not in page
    assert "js/prediction.js" in page
    assert "<dt>Tokens</dt>" in page


def test_copy_as_curl_recreates_the_prediction(make, org, owner, client_for):
    model_input = {"prompt": "it's quoted", "tokens_per_second": 50}
    prediction = make(org, input=model_input, output="it's quoted")
    page = detail(client_for(owner, org), prediction)
    assert 'data-target="curl-command">Copy as curl</button>' in page
    start = page.index('id="curl-command">') + len('id="curl-command">')
    command = html.unescape(page[start : page.index("</pre>", start)])
    assert "POST http://testserver/api/v1/predictions" in command
    assert "Bearer $MODEL_PORTAL_TOKEN" in command
    # The shell's own quoting: what follows -d is the JSON with each ' written '\''.
    body = command.split("-d '", 1)[1].removesuffix("'").replace("'\\''", "'")
    payload = json.loads(body)
    assert payload == {"model": "echo", "input": model_input}


def test_embeddings_are_summarised_not_listed(make, org, owner, client_for):
    vectors = [[0.123456 + i / 1000 for i in range(384)], [0.5] * 384]
    prediction = make(org, EMBEDDER, input={"input": ["one", "two"]}, output=vectors)
    page = detail(client_for(owner, org), prediction)
    assert "2 vectors</strong> · dimension <strong" in page and ">384<" in page
    assert "[0.1235, 0.1245, 0.1255, 0.1265, 0.1275, 0.1285, …]" in page
    assert '<li class="prompt-text">one</li>' in page
    # The full vectors are there for the script (Copy / Download), never as page text.
    assert page.count("0.383456") == 1 and 'id="prediction-output-data"' in page


def test_classification_labels_with_a_json_toggle(make, org, owner, client_for):
    scores = [{"label": "positive", "score": 0.9}, {"label": "negative", "score": 0.1}]
    prediction = make(org, CLASSIFIER, input={"text": "great"}, output=scores)
    page = detail(client_for(owner, org), prediction)
    assert '<div class="prompt-text">great</div>' in page
    assert "<strong>positive</strong> 90.0%" in page
    assert 'data-task="text-classification"' in page
    assert (
        "<summary>Output as JSON</summary>" in page
        and "&quot;label&quot;: &quot;positive&quot;" in page
    )


def test_other_output_is_indented_json(make, org, owner, client_for):
    prediction = make(org, output={"answer": [1, 2]})
    page = detail(client_for(owner, org), prediction)
    assert '<pre class="json" id="output-json">{\n  &quot;answer&quot;: [\n    1,' in page


def test_erased_data_shows_no_input_output_or_curl(make, org, owner, client_for):
    prediction = make(org, input={}, output=None, data_removed_at=timezone.now())
    page = detail(client_for(owner, org), prediction)
    assert "were erased on <time" in page
    assert "curl-command" not in page and "prediction-input" not in page
    assert "open-in-playground" not in page
    assert ">erased<" in listed(client_for(owner, org))


def test_outsider_gets_404_for_the_detail(make, org, outsider, client_for):
    prediction = make(org)
    assert client_for(outsider).get(f"/predictions/{prediction.id}/").status_code == 404


@pytest.mark.parametrize(
    ("model_input", "preview"),
    [
        ({"prompt": "  two\nlines  "}, "two lines"),
        ({"messages": [{"role": "system", "content": "only a system turn"}]}, "only a system turn"),
        ({"messages": "not a list"}, ""),
        ({"input": ["just one"]}, "just one"),
        ({"input": "a text"}, "a text"),
        ({"seed": 3}, '{"seed": 3}'),
        ({}, ""),
    ],
)
def test_input_preview_of_any_stored_input(model_input, preview):
    assert input_preview(Prediction(input=model_input)) == preview
