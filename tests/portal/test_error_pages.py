"""The one-command run's visitors see the product's own error pages: Django's technical
pages (the URL list, tracebacks) only when a developer turns DEBUG on."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.livestack import running_web

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def default_server(django_db_setup):
    # The environment of `make run`: nobody set DEBUG.
    saved = os.environ.pop("DEBUG", None)
    try:
        with running_web() as (base_url, _):
            yield base_url
    finally:
        if saved is not None:
            os.environ["DEBUG"] = saved


def test_a_missing_page_is_the_products_404(default_server):
    response = httpx.get(f"{default_server}/no-such-page/")
    assert response.status_code == 404
    assert "There is nothing here" in response.text
    assert "URLconf" not in response.text and "DEBUG = True" not in response.text


def test_a_missing_api_path_is_a_json_404(default_server):
    response = httpx.get(f"{default_server}/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
