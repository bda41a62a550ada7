"""OpenAI-compatible `/v1` API: each call is a prediction through the same admission,
quota, event log, cancel and tenancy path as `/api/v1/predictions` (API.md).

Views are async so that a streaming client that disconnects is noticed: the generator is
closed, and closing it cancels the prediction, so only what was generated is billed.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from billing.costs import cost_number, cost_of
from billing.metering import parse_max_cost
from billing.pricing import catalog_pricing
from inference import admission, concurrency, events, hub
from inference.models import Prediction, Source, Status
from inference.streaming import (
    CredentialsRevoked,
    StreamGuard,
    guarded_tail,
    start_holding_slot,
)
from models_hub.models import ModelListing
from portal import hotcache, strict_json
from portal.auth import Principal, resolve_bearer
from portal.errors import AuthenticationFailed, InvalidInput, NotAllowed, PortalError
from portal.middleware import error_body

# Non-streamed calls wait this long for the prediction (a long generation on CPU).
COMPLETION_WAIT_SECONDS = 600
UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "logprobs", "top_logprobs")


def _error(exc: PortalError) -> JsonResponse:
    response = JsonResponse(
        error_body(exc.type, exc.code, exc.message, exc.param), status=exc.status
    )
    if getattr(exc, "retry_after", None):
        response["Retry-After"] = str(exc.retry_after)
    return response


def _principal(request: HttpRequest) -> Principal:
    principal = resolve_bearer(request.headers.get("Authorization"))
    if principal is None:
        raise AuthenticationFailed("Send your API token as 'Authorization: Bearer <token>'.")
    return principal


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = strict_json.loads(request.body or b"null")
    except strict_json.UnsafeJSON as exc:
        raise InvalidInput(str(exc), code="malformed_json") from exc
    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object.")
    return body


class MethodNotAllowed(PortalError):
    status = 405
    code = "method_not_allowed"


@dataclass(frozen=True)
class Call:
    """What a POST endpoint's body asks for, read (and refused) before admission."""

    model: str
    model_input: dict[str, Any]
    stream: bool = False
    include_usage: bool = False
    # The endpoint's own response options (embeddings' `encoding_format`).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Admitted:
    """A POST call admitted: its prediction queued with one of the org's slots held (a
    stream slot for a streamed call, a wait slot otherwise), which the response gives back."""

    principal: Principal
    call: Call
    slot: concurrency.Slot
    prediction: Prediction


def _authorize_and_admit(request: HttpRequest, parse: Callable[[dict], Call]) -> Admitted:
    """The caller, the body and the admission in one hop to a thread: each hop waits behind
    the event loop's other work and costs the web process CPU of its own (the token lookup
    had a hop of its own before). Refusals come in the same order as before: the token
    first, then the body, then admission's. The cache generations that the token lookup
    and admission check are read in one Redis round trip (`hotcache.read_once`)."""
    with hotcache.read_once(*admission.HOT_SCOPES):
        principal = _principal(request)
        body = _json_body(request)
        call = parse(body)
        kind = concurrency.Kind.STREAM if call.stream else concurrency.Kind.WAIT
        slot, prediction = start_holding_slot(
            principal, kind, lambda: _admit(principal, call.model, call.model_input, body)
        )
    return Admitted(principal, call, slot, prediction)


authorize_and_admit = sync_to_async(_authorize_and_admit)


def openai_view(
    method: str, parse: Callable[[dict], Call] | None = None
) -> Callable[[Callable], Callable]:
    """Auth and OpenAI-shaped errors for one /v1 endpoint. A GET handler gets the caller; a
    POST handler, whose body `parse` reads, gets its call admitted (`Admitted`)."""

    def decorator(handler: Callable) -> Callable:
        @csrf_exempt
        async def view(request: HttpRequest) -> HttpResponse:
            try:
                if request.method != method:
                    raise MethodNotAllowed(f"Use {method} for this endpoint.")
                if parse is None:
                    return await handler(await sync_to_async(_principal)(request))
                return await handler(await authorize_and_admit(request, parse))
            except PortalError as exc:
                response = _error(exc)
                if isinstance(exc, MethodNotAllowed):
                    response["Allow"] = method
                return response

        return view

    return decorator


# --- Request mapping ------------------------------------------------------------------


def _require(body: dict, name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if value is None:
        raise InvalidInput(f"Missing required parameter: '{name}'.", param=name)
    if not isinstance(value, kind):
        raise InvalidInput(f"Invalid type for '{name}'.", param=name)
    return value


def _reject_unsupported(body: dict) -> None:
    n = body.get("n")
    if n is not None and (type(n) is not int or n != 1):
        # `type(n) is int`: `true == 1` and `1.0 == 1` in Python, neither is n=1 in JSON.
        raise InvalidInput("Only n=1 is supported.", param="n", code="unsupported_parameter")
    for name in UNSUPPORTED:
        if body.get(name):
            raise InvalidInput(
                f"'{name}' is not supported by this model.",
                param=name,
                code="unsupported_parameter",
            )


def _generation_params(body: dict) -> dict[str, Any]:
    params: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        params["max_new_tokens"] = max_tokens
    for name in ("temperature", "top_p", "seed"):
        if body.get(name) is not None:
            params[name] = body[name]
    stop = body.get("stop")
    if stop is not None:
        params["stop"] = [stop] if isinstance(stop, str) else stop
    return params


def _stream_options(body: dict) -> tuple[bool, bool]:
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise InvalidInput("Invalid type for 'stream'.", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InvalidInput("Invalid type for 'stream_options'.", param="stream_options")
    return stream, bool(options.get("include_usage"))


def _map_input_errors(exc: InvalidInput) -> InvalidInput:
    """`input.max_new_tokens` means nothing to an OpenAI client: name its own parameter."""
    names = {"input.max_new_tokens": "max_tokens", "input.messages": "messages"}
    if exc.param in names:
        exc.param = names[exc.param]
    elif exc.param and exc.param.startswith("input."):
        exc.param = exc.param.removeprefix("input.")
    return exc


def _admit(principal: Principal, model: str, model_input: dict, body: dict) -> Prediction:
    request = admission.PredictionRequest(
        model=model,
        input=model_input,
        source=Source.OPENAI,
        max_cost=parse_max_cost(body.get("max_cost")),
    )
    try:
        return admission.admit(principal, request)
    except InvalidInput as exc:
        raise _map_input_errors(exc) from exc


# --- Response shapes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a response's end says of a finished prediction: read from its row, or from
    its `done` event, whose payload carries the same fields (a stream then needs no
    query of its own at the end)."""

    status: str
    error: str
    input_tokens: int
    output_tokens: int
    max_new_tokens: int | None
    cost: float | None

    @classmethod
    def of(cls, prediction: Prediction) -> Outcome:
        return cls(
            status=prediction.status,
            error=prediction.error,
            input_tokens=prediction.input_tokens,
            output_tokens=prediction.output_tokens,
            max_new_tokens=prediction.input.get("max_new_tokens"),
            cost=cost_number(cost_of(prediction)),
        )

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Outcome:
        """From `inference.payloads.prediction_payload`, as the `done` event holds it."""
        metrics, cost = payload["metrics"], payload["cost"]
        return cls(
            status=payload["status"],
            error=payload["error"] or "",
            input_tokens=metrics["input_tokens"],
            output_tokens=metrics["output_tokens"],
            max_new_tokens=(payload["input"] or {}).get("max_new_tokens"),
            # The same float as `cost_number`: both parse the 6-decimal amount exactly.
            cost=None if cost is None else float(cost["amount"]),
        )


def _finish_reason(outcome: Outcome) -> str:
    limit = outcome.max_new_tokens
    if outcome.status == Status.SUCCEEDED and limit is not None and outcome.output_tokens >= limit:
        return "length"
    return "stop"


def _usage(outcome: Outcome) -> dict[str, Any]:
    return {
        "prompt_tokens": outcome.input_tokens,
        "completion_tokens": outcome.output_tokens,
        "total_tokens": outcome.input_tokens + outcome.output_tokens,
        "cost": outcome.cost,
    }


async def _final(prediction_id: str) -> Prediction:
    """The settled prediction with its receipt, in one query."""
    return await Prediction.objects.select_related("model", "call_cost").aget(pk=prediction_id)


class ModelFailed(PortalError):
    status = 500
    type = "server_error"
    code = "model_error"


def _check_succeeded(prediction: Prediction) -> None:
    if prediction.status == Status.FAILED:
        raise ModelFailed(prediction.error or "The model failed.")


async def _result_of(admitted: Admitted) -> Prediction:
    """A call answered only once its result is ready is a wait, like `Prefer: wait`: it
    holds one of the org's wait slots (taken before admission, so that an org at its cap
    is refused before anything is created) and no pooled connection while it waits."""
    try:
        return await _wait_until_done(admitted.prediction, admitted.slot)
    finally:
        await sync_to_async(admitted.slot.release, thread_sensitive=False)()


async def _wait_until_done(prediction: Prediction, slot: concurrency.Slot) -> Prediction:
    deadline = time.monotonic() + COMPLETION_WAIT_SECONDS
    renew = sync_to_async(slot.renew, thread_sensitive=False)
    next_renewal = time.monotonic() + concurrency.renew_every()
    # Wakes at least once per renewal period, so the slot's lease never runs out mid-wait.
    tail = hub.tail(prediction.id, 0, idle_seconds=concurrency.renew_every())
    async with aclosing(tail):
        async for event in tail:
            if event is not None and event.type == events.TERMINAL_EVENT:
                break
            now = time.monotonic()
            if now > deadline:
                break
            if now >= next_renewal:
                await renew()
                next_renewal = now + concurrency.renew_every()
    return await _final(prediction.id)


class _CancelOnClose:
    """Cancels the prediction if the stream ends before its `done` (client went away)."""

    def __init__(self, prediction: Prediction):
        self.prediction = prediction
        self.finished = False

    async def close(self) -> None:
        if not self.finished:
            await sync_to_async(admission.cancel)(self.prediction)


def _sse(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n"


def _closing_chunks(
    final: Outcome, chunk: Callable[[dict | None, str | None], dict], include_usage: bool
) -> str:
    """The stream's last chunks, written at once: each write is a trip through the server
    and a packet to the client, and these are all known together."""
    parts = []
    if final.status == Status.FAILED:
        parts.append(_sse({"error": {"message": final.error, "type": "api_error"}}))
    parts.append(_sse(chunk({}, _finish_reason(final))))
    if include_usage:
        parts.append(_sse({**chunk(None, None), "choices": [], "usage": _usage(final)}))
    parts.append(_sse("[DONE]"))
    return "".join(parts)


async def _stream_chunks(
    prediction: Prediction,
    stream_guard: StreamGuard,
    chunk: Callable[[dict | None, str | None], dict],
    include_usage: bool,
    first_delta: dict | None,
) -> AsyncIterator[str]:
    guard = _CancelOnClose(prediction)
    try:
        if first_delta is not None:
            yield _sse(chunk(first_delta, None))
        async with aclosing(guarded_tail(prediction.id, 0, stream_guard)) as tail:
            async for event in tail:
                if event is None:
                    yield ": keep-alive\n\n"
                elif event.type == "output" and isinstance(event.data, str):
                    yield _sse(chunk({"content": event.data}, None))
                elif event.type == events.TERMINAL_EVENT:
                    guard.finished = True
                    yield _closing_chunks(Outcome.from_payload(event.data), chunk, include_usage)
                    return
    except CredentialsRevoked as exc:
        # The generation is canceled below: nobody may receive (or be billed for) the rest.
        yield _sse(error_body(exc.type, exc.code, exc.message, exc.param))
    finally:
        try:
            await guard.close()
        finally:
            await stream_guard.release()


def _streaming_response(
    admitted: Admitted,
    chunk: Callable[[dict | None, str | None], dict],
    first_delta: dict | None,
) -> StreamingHttpResponse:
    """The admitted call's events as `chunk`s; the stream holds the slot admission took."""
    stream_guard = StreamGuard.holding(admitted.principal, admitted.slot)
    include_usage = admitted.call.include_usage
    stream = _stream_chunks(admitted.prediction, stream_guard, chunk, include_usage, first_delta)
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


# --- Endpoints ------------------------------------------------------------------------


def _callable_models(principal: Principal) -> tuple[list[ModelListing], dict[int, dict]]:
    listings = [
        listing
        for listing in ModelListing.objects.callable_by(principal.org)
        .select_related("org")
        .order_by("slug")
        if principal.allows_model(listing.slug)
    ]
    return listings, catalog_pricing(listings)


@openai_view("GET")
async def list_models(principal: Principal) -> JsonResponse:
    if not principal.has_scope("read"):
        raise NotAllowed("This token lacks the 'read' scope.", code="missing_scope")
    listings, pricing = await sync_to_async(_callable_models)(principal)
    data = [
        {
            "id": listing.slug,
            "object": "model",
            "created": int(listing.created_at.timestamp()),
            "owned_by": listing.publisher_name,
            # As OpenRouter does: the same object as the catalog's `pricing`.
            "pricing": pricing[listing.pk],
        }
        for listing in listings
    ]
    return JsonResponse({"object": "list", "data": data})


def _generation_call(body: dict, name: str, kind: type) -> Call:
    """A chat or text completion: the model, what it continues (`name`: the messages or
    the prompt) and the generation parameters."""
    model = _require(body, "model", str)
    value = _require(body, name, kind)
    _reject_unsupported(body)
    stream, include_usage = _stream_options(body)
    return Call(model, {name: value, **_generation_params(body)}, stream, include_usage)


@openai_view("POST", parse=partial(_generation_call, name="messages", kind=list))
async def chat_completions(admitted: Admitted) -> HttpResponse:
    model, prediction = admitted.call.model, admitted.prediction
    if not admitted.call.stream:
        return _chat_completion(await _result_of(admitted), model)
    created = int(prediction.created_at.timestamp())
    completion_id = f"chatcmpl-{prediction.id}"

    def chunk(delta: dict | None, finish_reason: str | None) -> dict:
        choices = [] if delta is None else [
            {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        ]  # fmt: skip
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        }

    return _streaming_response(admitted, chunk, {"role": "assistant", "content": ""})


def _chat_completion(final: Prediction, model: str) -> JsonResponse:
    _check_succeeded(final)
    outcome = Outcome.of(final)
    return JsonResponse(
        {
            "id": f"chatcmpl-{final.id}",
            "object": "chat.completion",
            "created": int(final.created_at.timestamp()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": final.output or ""},
                    "finish_reason": _finish_reason(outcome),
                    "logprobs": None,
                }
            ],
            "usage": _usage(outcome),
        }
    )


@openai_view("POST", parse=partial(_generation_call, name="prompt", kind=str))
async def completions(admitted: Admitted) -> HttpResponse:
    model, prediction = admitted.call.model, admitted.prediction
    if not admitted.call.stream:
        return _text_completion(await _result_of(admitted), model)
    created = int(prediction.created_at.timestamp())
    completion_id = f"cmpl-{prediction.id}"

    def chunk(delta: dict | None, finish_reason: str | None) -> dict:
        choices = [] if delta is None else [_text_choice(delta.get("content", ""), finish_reason)]
        return {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": choices,
        }

    return _streaming_response(admitted, chunk, None)


def _text_choice(text: str, finish_reason: str | None) -> dict:
    return {"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}


def _text_completion(final: Prediction, model: str) -> JsonResponse:
    _check_succeeded(final)
    outcome = Outcome.of(final)
    return JsonResponse(
        {
            "id": f"cmpl-{final.id}",
            "object": "text_completion",
            "created": int(final.created_at.timestamp()),
            "model": model,
            "choices": [_text_choice(final.output or "", _finish_reason(outcome))],
            "usage": _usage(outcome),
        }
    )


def _encode_embedding(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def _embedding_call(body: dict) -> Call:
    model = _require(body, "model", str)
    texts = _require(body, "input", (str, list))
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        message = "encoding_format must be 'float' or 'base64'."
        raise InvalidInput(message, param="encoding_format")
    if body.get("dimensions") is not None:
        raise InvalidInput(
            "'dimensions' is not supported by this model.",
            param="dimensions",
            code="unsupported_parameter",
        )
    return Call(model, {"input": texts}, options={"encoding_format": encoding_format})


@openai_view("POST", parse=_embedding_call)
async def embeddings(admitted: Admitted) -> HttpResponse:
    final = await _result_of(admitted)
    _check_succeeded(final)
    encoding_format = admitted.call.options["encoding_format"]
    data = [
        {"object": "embedding", "index": i, "embedding": _encode_embedding(v, encoding_format)}
        for i, v in enumerate(final.output or [])
    ]
    usage = {
        "prompt_tokens": final.input_tokens,
        "total_tokens": final.input_tokens,
        "cost": cost_number(cost_of(final)),
    }
    model = admitted.call.model
    return JsonResponse({"object": "list", "data": data, "model": model, "usage": usage})
