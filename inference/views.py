"""Browser pages: the org's prediction history, one prediction's detail, and the bytes of
an image the org sent (the prediction page's input, the playground's prefill)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from billing.costs import cost_of, cost_payload
from inference import files
from inference.file_access import viewable_file
from inference.images import image_fields
from inference.models import Prediction, Source, Status
from inference.presentation import (
    input_view,
    list_rows,
    models_used,
    output_view,
    parse_filters,
    pretty_json,
)
from models_hub.catalog import diagnostic_last
from models_hub.models import ListingStatus, ModelListing
from models_hub.snippets import curl_snippet
from portal.errors import NotFound
from portal.scoping import get_for_org, scoped
from portal.views import org_member_required

PAGE_SIZE = 25
# The model page shows its playground for these (templates/models_hub/detail.html).
PLAYGROUND_STATUSES = (ListingStatus.PUBLISHED, ListingStatus.DEPRECATED)


@org_member_required()
def prediction_list(request: HttpRequest) -> HttpResponse:
    predictions = scoped(Prediction.objects.select_related("model"), request.org)
    models = models_used(predictions)
    filters = parse_filters(request.GET, {listing.slug for listing in models})
    page = Paginator(filters.apply(predictions), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "rows": list_rows(list(page)),
        "filters": filters,
        "models": models,
        "statuses": Status.values,
        "sources": Source.values,
    }
    return render(request, "inference/prediction_list.html", context)


@org_member_required()
def prediction_detail(request: HttpRequest, prediction_id: str) -> HttpResponse:
    try:
        prediction = get_for_org(
            Prediction.objects.select_related("model", "token", "call_cost"),
            request.org,
            pk=prediction_id,
        )
    except NotFound as exc:
        raise Http404(exc.message) from exc
    kept = prediction.data_removed_at is None
    base_url = request.build_absolute_uri("/").rstrip("/")
    context = {
        "prediction": prediction,
        "cost": cost_payload(cost_of(prediction)),
        "input": input_view(prediction) if kept else None,
        "input_json": pretty_json(prediction.input) if kept else "",
        "output": output_view(prediction) if kept and prediction.output is not None else None,
        # The same command as the model page's curl snippet, with this prediction's input.
        "curl": curl_snippet(prediction.model, base_url, prediction.input).code if kept else "",
        # The model page's playground takes this prediction's input (?from=), while the
        # input is kept and the model still has a playground.
        "can_reopen": kept and prediction.model.status in PLAYGROUND_STATUSES,
        # Image tasks count images, not tokens: "0 in / 0 out" would only mislead.
        "counts_tokens": not image_fields(prediction.model.task),
    }
    return render(request, "inference/prediction_detail.html", context)


@org_member_required()
@require_safe
def file_content(request: HttpRequest, file_id: str) -> HttpResponse:
    """The image's bytes, as stored (validated and re-encoded when it arrived), for the
    session's org only."""
    stored = viewable_file(request.org, file_id)
    if stored is None:
        raise Http404("No such file.")
    try:
        handle = files.storage().open(stored.storage_name, "rb")
    except FileNotFoundError as exc:
        # Erased between the lookup and the read (its row goes right after its bytes).
        raise Http404("No such file.") from exc
    response = FileResponse(handle, content_type=stored.content_type)
    response["Content-Disposition"] = "inline"
    response["X-Content-Type-Options"] = "nosniff"
    # The org's own data: no shared cache keeps it, and a browser only briefly.
    response["Cache-Control"] = "private, max-age=300"
    return response


def quickstart(request: HttpRequest) -> HttpResponse:
    """First calls with curl, the openai SDK and streaming, with this site's real URLs."""
    org = request.org if request.user.is_authenticated else None
    # Real models first: the quickstart's first call must show a model at work, not echo.
    listings = ModelListing.objects.callable_by(org).order_by(diagnostic_last(), "slug")
    by_task = {listing.task: listing.slug for listing in reversed(listings)}
    context = {
        "base_url": request.build_absolute_uri("/").rstrip("/"),
        "chat_model": by_task.get("text-generation", "MODEL"),
        "embedding_model": by_task.get("embeddings", "MODEL"),
        "models": listings,
    }
    return render(request, "inference/quickstart.html", context)
