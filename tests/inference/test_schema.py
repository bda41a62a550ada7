"""The served OpenAPI document covers every /api/v1 and /v1 operation, and its UIs load."""

import pytest
import yaml
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

EXPECTED_PATHS = {
    "/api/v1/account",
    "/api/v1/models",
    "/api/v1/models/{slug}",
    "/api/v1/models/{slug}/versions",
    "/api/v1/predictions",
    "/api/v1/predictions/{id}",
    "/api/v1/predictions/{id}/cancel",
    "/api/v1/predictions/{id}/stream",
    "/v1/models",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
}


def test_schema_is_valid_openapi_3_and_documents_errors(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) >= EXPECTED_PATHS
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    assert {"400", "401", "404", "429"} <= set(chat["responses"])
    assert chat["requestBody"]["content"]["application/json"]["example"]


def test_every_operation_has_an_example(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    missing = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "example" not in yaml.safe_dump(operation)
    ]
    assert missing == []


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_are_served_without_a_cdn(client, url):
    page = client.get(url).content.decode()
    assert "cdn." not in page and "unpkg" not in page and "jsdelivr" not in page
    assert "/static/drf_spectacular_sidecar/" in page


def test_quickstart_uses_the_real_base_url_and_model_slugs(client):
    from models_hub.demo import load_demo_catalog

    load_demo_catalog()
    page = client.get("/docs/quickstart/").content.decode()
    assert 'base_url="http://testserver/v1"' in page or "http://testserver/v1" in page
    assert "all-minilm-l6-v2" in page


def test_money_fields_are_documented(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    components = schema["components"]["schemas"]
    assert {"amount", "currency", "billed", "generated_output_tokens", "paid_from"} <= set(
        components["PredictionCost"]["properties"]
    )
    assert "cost" in components["Prediction"]["properties"]
    pricing = set(components["Pricing"]["properties"])
    assert {"currency", "input_per_million", "output_per_million", "per_request"} <= pricing
    assert "pricing" in components["ModelSummary"]["properties"]
    chat = schema["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]
    usage = chat["content"]["application/json"]["schema"]["properties"]["usage"]
    assert usage["properties"]["cost"]["type"] == "number"
    models = schema["paths"]["/v1/models"]["get"]["responses"]["200"]
    item = models["content"]["application/json"]["schema"]["properties"]["data"]["items"]
    assert "per_second" in item["properties"]["pricing"]["properties"]
