"""The official `openai` SDK, unmodified, against the live server and worker."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import openai
import pytest

from billing import prices
from billing.models import CallCost
from inference.models import Prediction, Source, Status
from models_hub.demo import load_demo_catalog
from models_hub.models import ListingStatus, ModelListing, Visibility
from tests.conftest import fresh_window
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def client(stack, org, token_for):
    load_demo_catalog()
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=token_for(org), max_retries=0)


def test_models_list_shows_what_the_org_may_call(client):
    ids = {model.id for model in client.models.list()}
    assert {"echo", "smollm2-135m-instruct", "all-minilm-l6-v2"} <= ids


ECHO_PRICE = {
    "input_per_million": "0.5",
    "output_per_million": "1.5",
    "per_request": "0.001",
    "per_second": "0",
}


def expected_cost(prediction: Prediction) -> Decimal:
    """The echo call's cost at ECHO_PRICE, worked out here from the stored token counts."""
    exact = (
        prediction.input_tokens * Decimal("0.5") / 1_000_000
        + prediction.output_tokens * Decimal("1.5") / 1_000_000
        + Decimal("0.001")
    )
    return exact.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


@pytest.fixture
def priced_echo(client) -> None:
    prices.set_price(ModelListing.objects.get(slug="echo"), **ECHO_PRICE)


def test_models_list_carries_pricing(client, priced_echo):
    models = {model.id: model for model in client.models.list()}
    assert models["echo"].model_extra["pricing"] == {
        "currency": "usd", **ECHO_PRICE, "plans": [],
    }  # fmt: skip


def test_usage_cost_is_the_calls_cost(client, priced_echo):
    response = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "what does this cost"}]
    )
    prediction = Prediction.objects.get(source=Source.OPENAI)
    amount = CallCost.objects.get(prediction=prediction).amount
    assert amount == expected_cost(prediction) > Decimal("0.001")
    cost = response.usage.model_extra["cost"]
    assert isinstance(cost, float) and Decimal(repr(cost)) == amount


def test_streamed_usage_carries_the_cost(client, priced_echo):
    stream = client.completions.create(
        model="echo", prompt="a b c d", stream=True, stream_options={"include_usage": True}
    )
    usage = list(stream)[-1].usage
    prediction = Prediction.objects.get(source=Source.OPENAI)
    assert Decimal(repr(usage.model_extra["cost"])) == expected_cost(prediction)


def test_chat_completion_non_stream(client):
    response = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello from the sdk"}]
    )
    assert response.choices[0].message.content == "hello from the sdk"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.completion_tokens > 0
    assert Prediction.objects.get(source=Source.OPENAI).status == Status.SUCCEEDED


def test_chat_completion_stream_matches_the_prediction(client):
    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "one two three four five"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    prediction = Prediction.objects.get(source=Source.OPENAI)
    assert text == prediction.output == "one two three four five"
    assert chunks[-1].usage.completion_tokens == prediction.output_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_max_tokens_gives_finish_reason_length(client):
    response = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "a b c d e f g"}], max_tokens=3
    )
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 3


def test_a_stream_cut_at_max_tokens_ends_with_length(client):
    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "a b c d e f g"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.prompt_tokens == Prediction.objects.get().input_tokens


def test_completions(client):
    response = client.completions.create(model="echo", prompt="complete me", max_tokens=10)
    assert response.choices[0].text == "complete me"


@pytest.mark.models
def test_embeddings_for_a_string_and_a_list(client):
    one = client.embeddings.create(model="all-minilm-l6-v2", input="hello")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    many = client.embeddings.create(model="all-minilm-l6-v2", input=["a cat", "a dog"])
    assert [d.index for d in many.data] == [0, 1]
    assert many.usage.prompt_tokens > 0
    floats = client.embeddings.create(
        model="all-minilm-l6-v2", input="hello", encoding_format="float"
    )
    assert floats.data[0].embedding == pytest.approx(one.data[0].embedding, abs=1e-6)


def test_client_disconnect_cancels_the_generation(client):
    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": " ".join(["word"] * 300)}],
        stream=True,
    )
    for index, _ in enumerate(stream):
        if index == 5:
            break
    stream.close()
    wait_until(lambda: Prediction.objects.get(source=Source.OPENAI).status == Status.CANCELED)
    prediction = Prediction.objects.get(source=Source.OPENAI)
    assert 0 < prediction.output_tokens < 300


def test_a_stream_cut_off_after_output_is_charged_as_a_request(client):
    """Issue #11: streams cut off after 9 of 10 tokens used to settle with 0 requests."""
    stream = client.completions.create(
        model="echo", prompt=" ".join(["word"] * 300), max_tokens=300, stream=True
    )
    for index, _ in enumerate(stream):
        if index == 8:
            break
    stream.close()
    settled = CallCost.objects.filter(prediction__source=Source.OPENAI)
    wait_until(settled.exists)
    receipt = settled.get()
    prediction = receipt.prediction
    assert prediction.status == Status.CANCELED and 0 < prediction.output_tokens < 300
    assert receipt.requests == 1
    # Billed = delivered: the tokens logged before the cancel took effect, at most what
    # was generated.
    assert receipt.input_tokens == prediction.input_tokens
    assert 0 < receipt.output_tokens <= prediction.output_tokens
    assert receipt.generated_output_tokens == prediction.output_tokens


def test_error_classes(stack, client, org, token_for):
    bad_key = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="mp_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.models.list()
    read_only = openai.OpenAI(
        base_url=f"{stack.base_url}/v1", api_key=token_for(org, scopes=["read"]), max_retries=0
    )
    with pytest.raises(openai.PermissionDeniedError):
        read_only.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "x"}], n=2
        )
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="echo", messages="not a list")
    limited = openai.OpenAI(
        base_url=f"{stack.base_url}/v1",
        api_key=token_for(org, rate_limit_per_minute=1),
        max_retries=0,
    )
    fresh_window()  # both calls in one fixed window
    limited.completions.create(model="echo", prompt="first")
    with pytest.raises(openai.RateLimitError):
        limited.completions.create(model="echo", prompt="second")
    assert not Prediction.objects.filter(input__prompt="second").exists()


def test_outsiders_private_model_is_not_found(stack, client, outsider_org, token_for):
    ModelListing.objects.create(
        slug="rival-secret",
        name="Rival secret",
        org=outsider_org,
        summary="private",
        task="text-generation",
        source="builtin:echo",
        input_schema=ModelListing.objects.get(slug="echo").input_schema,
        status=ListingStatus.PUBLISHED,
        visibility=Visibility.PRIVATE,
    )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="rival-secret", messages=[{"role": "user", "content": "x"}]
        )
    assert "rival-secret" not in {m.id for m in client.models.list()}
    theirs = openai.OpenAI(
        base_url=f"{stack.base_url}/v1", api_key=token_for(outsider_org), max_retries=0
    )
    assert "rival-secret" in {m.id for m in theirs.models.list()}
