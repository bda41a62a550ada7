"""A prediction's web side: finding the model, quoting, admission (entitlement, input,
rate limits, quota reserved in the transaction that creates the prediction, the task sent
once it commits), `Prefer: wait`, and a client's cancel. The worker's side is
`inference.lifecycle`. Each state change is a conditional update, so two actors (a
canceler and a worker, the reaper) can never both win the same transition."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import metering, quota
from billing.hot import CONFIG_SCOPE
from billing.plans import PlanState
from inference import concurrency, events, files, webhooks
from inference.lifecycle import finish, queue_webhook, request_cancel
from inference.models import TERMINAL_STATUSES, Prediction, Source, Status
from inference.presence import queue_has_worker
from inference.task_names import RUN_PREDICTION
from models_hub import hot
from models_hub.models import ModelListing, ModelVersion
from models_hub.validation import validate_input
from models_hub.versions import split_model_ref, version_to_run
from portal import hotcache, metrics, ratelimit
from portal.auth import Principal
from portal.broker import publish_task
from portal.connections import give_back_db_connection
from portal.errors import (
    InvalidInput,
    NotAllowed,
    NotFound,
    PaymentRequired,
    RateLimited,
    Unavailable,
)
from portal.hot import TOKENS_SCOPE
from portal.hotcache import Stamp
from portal.sql import insert

logger = logging.getLogger(__name__)

# The process caches an API call's token lookup and its admission check (`hotcache`):
# the token, the catalog, plans and prices. The org's own scope is read when first needed.
HOT_SCOPES = (TOKENS_SCOPE, hot.CATALOG_SCOPE, CONFIG_SCOPE)


@dataclass
class PredictionRequest:
    model: str
    input: dict
    webhook: str = ""
    webhook_events_filter: list[str] | None = None
    source: str = Source.API
    extra: dict = field(default_factory=dict)
    # The most the caller will pay for this call (API.md `max_cost`); None: no limit.
    max_cost: Decimal | None = None


@dataclass(frozen=True)
class Target:
    """What a call runs: the listing as its version froze it (or as it is, when it has no
    version yet), and that version."""

    listing: ModelListing
    version: ModelVersion | None


def find_listing(principal: Principal, slug: str, stamp: Stamp | None) -> ModelListing:
    listing = hot.callable_listing(principal.org, slug, stamp)
    if listing is None:
        raise NotFound(f"Model {slug!r} not found.", code="model_not_found", param="model")
    return listing


def find_target(principal: Principal, model: str) -> Target:
    """`slug` (its newest live version) or `slug:<version>` (that one). The listing is
    looked up first, so another org's private listing is "not found" like a missing one,
    whatever version is named. Both come from the process's cache, under one stamp."""
    slug, version_id = split_model_ref(model)
    stamp = hot.catalog_stamp()
    listing = find_listing(principal, slug, stamp)
    version = version_to_run(listing, version_id, stamp)
    return Target(version.as_listing() if version else listing, version)


def quote(principal: Principal, model: str, data: dict) -> metering.Quote:
    """The cost of a call with this input, found and validated as admission would."""
    if not principal.has_scope("predict"):
        raise NotAllowed("This token lacks the 'predict' scope.", code="missing_scope")
    listing = find_target(principal, model).listing
    if not principal.allows_model(listing.slug):
        raise NotAllowed(f"This token may not call {listing.slug}.", code="model_not_allowed")
    return metering.quote(listing, validate_input(listing, data))


def _caller_limit(principal: Principal) -> ratelimit.Limit:
    if principal.token is None:
        name = f"user:{principal.user.pk}"
        limit = settings.DEFAULT_TOKEN_RATE_LIMIT_PER_MINUTE
    else:
        name = f"token:{principal.token.pk}"
        limit = (
            principal.token.rate_limit_per_minute or settings.DEFAULT_TOKEN_RATE_LIMIT_PER_MINUTE
        )
    return ratelimit.Limit(name, limit, f"Rate limit of {limit} requests per minute exceeded.")


def check_caller_rate_limit(principal: Principal) -> None:
    """The caller's own per-minute limit, for API calls besides predictions (files)."""
    ratelimit.enforce([_caller_limit(principal)])


def _check_rate_limits(principal: Principal, state: PlanState) -> None:
    """The caller's limit and the plan's, counted in one round trip."""
    plan_limits = quota.rate_limits(principal.org, state)
    try:
        ratelimit.enforce([_caller_limit(principal), *plan_limits])
    except RateLimited as exc:
        if any(limit.code == exc.code for limit in plan_limits):
            metrics.inc("portal_quota_rejections_total", {"code": exc.code})
        raise


def _check_entitlement(principal: Principal, listing: ModelListing) -> PlanState:
    try:
        return quota.check_entitlement(principal.org, listing)
    except PaymentRequired as exc:
        metrics.inc("portal_quota_rejections_total", {"code": exc.code})
        raise


def admit(principal: Principal, request: PredictionRequest) -> Prediction:
    """Turns a request into a queued prediction, or raises the error the client should see.

    Order matters: cheap checks first (the plan's entitlement before input validation,
    which may need the model's tokenizer); quota is reserved in the same transaction that
    creates the prediction, and the task is sent only once that transaction has committed.
    """
    if not principal.has_scope("predict"):
        raise NotAllowed("This token lacks the 'predict' scope.", code="missing_scope")
    target = find_target(principal, request.model)
    listing = target.listing
    if not principal.allows_model(listing.slug):
        raise NotAllowed(f"This token may not call {listing.slug}.", code="model_not_allowed")
    state = _check_entitlement(principal, listing)
    validated = validate_input(listing, request.input)
    webhook = webhooks.validate_webhook_url(request.webhook) if request.webhook else ""
    events_filter = webhooks.validate_events_filter(request.webhook_events_filter)
    _check_rate_limits(principal, state)
    if not queue_has_worker(listing.queue):
        raise Unavailable(
            f"No worker is serving the {listing.queue!r} queue for {listing.slug} right now; "
            "try again shortly.",
            code="no_worker",
        )
    # Decoding an image is the costliest check: after the cheap refusals.
    images = files.check_input_images(principal.org, listing.task, validated)
    with files.removed_on_failure() as written, transaction.atomic():
        # Inline images become files: the stored input names them, the worker reads only
        # their validated bytes, and retention erases them with the input.
        stored_input, held = files.store_input_images(principal, validated, images, written)
        # One statement, without the ORM compiling it on every call (nothing listens
        # to a prediction's signals).
        prediction = insert(
            Prediction(
                org=principal.org,
                token=principal.token,
                user=principal.user if principal.user and principal.user.pk else None,
                model=listing,
                version=target.version,
                source=request.source,
                input=stored_input,
                queue=listing.queue,
                webhook=webhook,
                webhook_events_filter=events_filter,
            )
        )
        if held:
            prediction.files.add(*held)
        _reserve_quota(prediction, listing, state, request.max_cost)
        transaction.on_commit(lambda: _dispatch(prediction, listing))
    logger.info(
        "prediction admitted: %s on %s",
        listing.slug,
        listing.queue,
        extra={"prediction_id": prediction.id, "org": prediction.org_id},
    )
    return prediction


def _reserve_quota(
    prediction: Prediction, listing: ModelListing, state: PlanState, max_cost: Decimal | None
) -> None:
    try:
        quota.reserve(prediction, listing, state, max_cost)
    except PaymentRequired as exc:
        metrics.inc("portal_quota_rejections_total", {"code": exc.code})
        raise


def _dispatch(prediction: Prediction, listing: ModelListing) -> None:
    events.append(prediction.id, "status", {"status": Status.STARTING})
    limits = listing.time_limits()
    publish_task(
        RUN_PREDICTION,
        [prediction.id],
        listing.queue,
        soft_time_limit=limits.soft,
        time_limit=limits.hard,
    )
    queue_webhook(prediction, "start")


def queue_position(prediction: Prediction) -> int:
    """1 when next in line: the queued predictions on the same queue admitted before it."""
    ahead = Prediction.objects.filter(
        queue=prediction.queue, status=Status.STARTING, created_at__lt=prediction.created_at
    )
    return ahead.count() + 1


def cancel(prediction: Prediction) -> Prediction:
    """Idempotent. A queued prediction is canceled at once; a running one is flagged and
    its worker stops within one token and finishes it as canceled."""
    if prediction.status in TERMINAL_STATUSES:
        return prediction
    now = timezone.now()
    Prediction.objects.filter(pk=prediction.pk, cancel_requested_at__isnull=True).update(
        cancel_requested_at=now
    )
    request_cancel(prediction.id)
    # Not yet claimed: nobody else will finish it.
    finish(prediction, Status.CANCELED, from_status=Status.STARTING)
    prediction.refresh_from_db()
    return prediction


def validate_wait(prefer_header: str | None) -> int | None:
    """`Prefer: wait` or `Prefer: wait=N` (1..60) -> seconds to wait; None if absent."""
    if not prefer_header:
        return None
    for part in prefer_header.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        if not value:
            return settings.PREFER_WAIT_MAX_SECONDS
        if not value.strip().isdigit() or not 1 <= int(value) <= settings.PREFER_WAIT_MAX_SECONDS:
            raise InvalidInput(
                f"Prefer: wait=N needs 1 <= N <= {settings.PREFER_WAIT_MAX_SECONDS}.",
                param="Prefer",
            )
        return int(value)
    return None


def admit_and_wait(principal: Principal, request: PredictionRequest, seconds: int) -> Prediction:
    """`Prefer: wait`: admits, then waits up to `seconds` for a terminal state, holding one
    of the org's wait slots (taken first: an org at its cap is refused before anything is
    created) and neither a pooled database nor a pooled Redis connection while it waits."""
    with concurrency.held(principal.org, concurrency.Kind.WAIT) as slot:
        prediction = admit(principal, request)
        give_back_db_connection()
        hotcache.end_read_once()
        events.wait_for_terminal(
            prediction.id, seconds, tick=concurrency.renew_every(), on_tick=slot.renew
        )
    prediction.refresh_from_db()
    return prediction
