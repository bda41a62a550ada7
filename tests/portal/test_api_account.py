import pytest

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == type_
    assert set(error) == {"type", "code", "message", "param"}
    return error


def test_account_answers_with_the_tokens_org(org, token_for, api_client):
    response = api_client(token_for(org, scopes=["read"])).get("/api/v1/account")
    assert response.status_code == 200
    body = response.json()
    assert body["org"]["slug"] == org.slug
    assert body["token"]["scopes"] == ["read"]


def test_account_with_session_uses_the_current_org(owner, org, client_for):
    response = client_for(owner, org).get("/api/v1/account")
    assert response.status_code == 200
    assert response.json()["org"]["slug"] == org.slug


def test_account_without_credentials_is_401_json(api_client):
    error = assert_error(api_client().get("/api/v1/account"), 401, "authentication_error")
    assert "credentials" in error["message"].lower()


@pytest.mark.parametrize(
    "header",
    ["Bearer nonsense", "Bearer ", "Bearer mp_abcdefgh_" + "A" * 40, "Bearer " + "x" * 5000],
)
def test_account_with_bad_token_is_401(header, client):
    response = client.get("/api/v1/account", HTTP_AUTHORIZATION=header)
    assert_error(response, 401, "authentication_error")


def test_token_without_read_scope_is_403(org, token_for, api_client):
    response = api_client(token_for(org, scopes=["predict"])).get("/api/v1/account")
    assert_error(response, 403, "permission_error")


def test_wrong_method_is_405_json(org, token_for, api_client):
    response = api_client(token_for(org)).post(
        "/api/v1/account", data="{}", content_type="application/json"
    )
    assert_error(response, 405, "invalid_request_error")


def test_malformed_json_is_400_json(org, token_for, api_client):
    response = api_client(token_for(org)).put(
        "/api/v1/account", data="{not json", content_type="application/json"
    )
    # PUT is not allowed at all: the method check wins over parsing, still JSON.
    assert_error(response, 405, "invalid_request_error")


def test_unknown_api_path_is_404_json(api_client):
    assert_error(api_client().get("/api/v1/nothing-here"), 404, "not_found_error")
    assert_error(api_client().get("/v1/nothing-here"), 404, "not_found_error")
