"""The error renderer on a real DRF view: validation, parse and service errors."""

import pytest
from django.test import RequestFactory
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.errors import RateLimited
from portal.models import ApiToken

pytestmark = pytest.mark.django_db


class EchoSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=5)
    count = serializers.IntegerField(min_value=0)


class EchoView(APIView):
    def post(self, request):
        serializer = EchoSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data["count"] > 3:
            raise RateLimited("Slow down.", retry_after=7)
        return Response(serializer.validated_data)


@pytest.fixture
def call(org, token_for):
    token = token_for(org)
    factory = RequestFactory()

    def post(body: str):
        request = factory.post(
            "/api/v1/echo", data=body, content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )  # fmt: skip
        response = EchoView.as_view()(request)
        response.render()
        return response

    return post


def test_validation_error_names_the_field(call):
    response = call('{"name": "toolong", "count": 1}')
    assert response.status_code == 400
    error = response.data["error"]
    assert error["param"] == "name"
    assert error["message"].startswith("name:")


@pytest.mark.parametrize("body", ["{bad json", "[1, 2", '"unterminated'])
def test_malformed_json_is_a_clear_400(call, body):
    response = call(body)
    assert response.status_code == 400
    assert response.data["error"]["code"] == "malformed_json"


def test_wrong_type_is_400(call):
    response = call('{"name": "ok", "count": "many"}')
    assert response.status_code == 400
    assert response.data["error"]["param"] == "count"


def test_service_rate_limit_sets_retry_after(call):
    response = call('{"name": "ok", "count": 9}')
    assert response.status_code == 429
    assert response["Retry-After"] == "7"
    assert response.data["error"]["type"] == "rate_limit_error"


def test_empty_body_is_400_naming_required_fields(call):
    response = call("{}")
    assert response.status_code == 400
    assert response.data["error"]["param"] in {"name", "count"}
    assert ApiToken.objects.count() == 1
