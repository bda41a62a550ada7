"""OpenAPI for the endpoints that are plain async Django views (streams, `/v1`), added to
drf-spectacular's generated schema by a postprocessing hook."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message", "param"],
            "properties": {
                "type": {"type": "string"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "param": {"type": "string", "nullable": True},
            },
        }
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _errors(*statuses: int) -> dict[str, Any]:
    descriptions = {
        400: "Bad input",
        401: "Missing or invalid token",
        402: "No plan includes the model, or quota exhausted",
        403: "Token lacks the scope or the model",
        404: "Unknown model, version or prediction (another org's is the same)",
        410: "The pinned model version is retired (`version_retired`)",
        413: "Body too large",
        429: "Rate limited (see Retry-After)",
        503: "No worker serves the model's queue",
    }
    return {
        str(status): {
            "description": descriptions[status],
            "content": {"application/json": {"schema": ERROR_REF}},
        }
        for status in statuses
    }


MODEL = {
    "type": "string",
    "description": "A model slug, or `slug:<version id>` to pin a version.",
}
MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant"]},
        "content": {"type": "string"},
    },
}
GENERATION_PARAMS = {
    "max_tokens": {"type": "integer", "minimum": 1},
    "max_completion_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "seed": {"type": "integer", "minimum": 0},
    "n": {"type": "integer", "enum": [1]},
    "stream": {"type": "boolean"},
    "stream_options": {
        "type": "object",
        "properties": {"include_usage": {"type": "boolean"}},
    },
}
USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
        "cost": {
            "type": "number",
            "nullable": True,
            "description": "What the call cost, in the portal's currency (as OpenRouter sends "
            "it): the prediction's `cost.amount` as a number.",
        },
    },
}
PRICE_STRING = {"type": "string", "description": 'A decimal string; "0" is free.'}
PRICING = {
    "type": "object",
    "description": "The price in force now, as the catalog's `pricing`.",
    "properties": {
        "currency": {"type": "string"},
        "input_per_million": PRICE_STRING,
        "output_per_million": PRICE_STRING,
        "per_request": PRICE_STRING,
        "per_second": PRICE_STRING,
        "plans": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"slug": {"type": "string"}, "name": {"type": "string"}},
            },
        },
    },
}
EXAMPLE_PRICING = {
    "currency": "usd",
    "input_per_million": "0",
    "output_per_million": "0",
    "per_request": "0",
    "per_second": "0",
    "plans": [{"slug": "free", "name": "Free"}],
}
SSE_EVENT = {
    "type": "object",
    "description": "One server-sent event; `data` is JSON text.",
    "required": ["event", "data"],
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string", "enum": ["status", "output", "log", "error", "done"]},
        "data": {"type": "string"},
    },
}
STREAM_NOTE = (
    "With `stream: true` the response is `text/event-stream`: `data: {chunk}` lines, "
    "then `data: [DONE]`."
)


def _json(schema: dict, example: dict | None = None) -> dict:
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"application/json": content}


STREAM_CHUNK = {
    "type": "object",
    "description": "One `data:` line: a JSON chunk, or `[DONE]` at the end.",
    "required": ["data"],
    "properties": {"data": {"type": "string"}},
}


def _ok_content(request: dict, response: dict, example: dict) -> dict:
    content = _json(response, example)
    if "stream" in request.get("properties", {}):
        content["text/event-stream"] = {"schema": STREAM_CHUNK}
    return content


def _post(
    operation_id: str,
    summary: str,
    request: dict,
    example: dict,
    response: dict,
    response_example: dict,
) -> dict:
    return {
        "post": {
            "operationId": operation_id,
            "tags": ["openai"],
            "summary": summary,
            "description": STREAM_NOTE if "stream" in request.get("properties", {}) else "",
            "security": [{"bearerAuth": []}],
            "requestBody": {"required": True, "content": _json(request, example)},
            "responses": {
                "200": {
                    "description": "OK",
                    "content": _ok_content(request, response, response_example),
                },
                **_errors(400, 401, 402, 403, 404, 410, 413, 429, 503),
            },
        }
    }


CHAT_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": MODEL,
        "messages": {"type": "array", "minItems": 1, "items": MESSAGE},
        **GENERATION_PARAMS,
    },
}
COMPLETION_REQUEST = {
    "type": "object",
    "required": ["model", "prompt"],
    "properties": {"model": MODEL, "prompt": {"type": "string"}, **GENERATION_PARAMS},
}
EMBEDDING_REQUEST = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": MODEL,
        "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "encoding_format": {"type": "string", "enum": ["float", "base64"]},
    },
}
CHOICE_COMMON = {"index": {"type": "integer"}, "finish_reason": {"type": "string"}}
CHAT_RESPONSE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {**CHOICE_COMMON, "message": MESSAGE},
            },
        },
        "usage": USAGE,
    },
}
COMPLETION_RESPONSE = {
    "type": "object",
    "properties": {
        **{k: CHAT_RESPONSE["properties"][k] for k in ("id", "object", "created", "model")},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {**CHOICE_COMMON, "text": {"type": "string"}},
            },
        },
        "usage": USAGE,
    },
}
EMBEDDING_RESPONSE = {
    "type": "object",
    "properties": {
        "object": {"type": "string"},
        "model": {"type": "string"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "object": {"type": "string"},
                    "index": {"type": "integer"},
                    "embedding": {
                        "oneOf": [
                            {"type": "array", "items": {"type": "number"}},
                            {"type": "string"},
                        ]
                    },
                },
            },
        },
        "usage": USAGE,
    },
}
MODELS_RESPONSE = {
    "type": "object",
    "properties": {
        "object": {"type": "string"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "object": {"type": "string"},
                    "created": {"type": "integer"},
                    "owned_by": {"type": "string"},
                    "pricing": PRICING,
                },
            },
        },
    },
}

PATHS = {
    "/v1/models": {
        "get": {
            "operationId": "openai_models_list",
            "tags": ["openai"],
            "summary": "Models the token's organization may call",
            "security": [{"bearerAuth": []}],
            "responses": {
                "200": {
                    "description": "OK",
                    "content": _json(
                        MODELS_RESPONSE,
                        {
                            "object": "list",
                            "data": [
                                {
                                    "id": "echo",
                                    "object": "model",
                                    "created": 0,
                                    "owned_by": "x",
                                    "pricing": EXAMPLE_PRICING,
                                }
                            ],
                        },
                    ),
                },
                **_errors(401, 403),
            },
        }
    },
    "/v1/chat/completions": _post(
        "openai_chat_completions_create",
        "Chat completion (OpenAI-compatible)",
        CHAT_REQUEST,
        {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi!"}]},
        CHAT_RESPONSE,
        {
            "id": "chatcmpl-abc",
            "object": "chat.completion",
            "created": 0,
            "model": "smollm2-135m-instruct",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello!"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 9,
                "completion_tokens": 3,
                "total_tokens": 12,
                "cost": 0.000009,
            },
        },
    ),
    "/v1/completions": _post(
        "openai_completions_create",
        "Text completion (OpenAI-compatible)",
        COMPLETION_REQUEST,
        {"model": "smollm2-135m-instruct", "prompt": "Once upon a time", "max_tokens": 32},
        COMPLETION_RESPONSE,
        {
            "id": "cmpl-abc",
            "object": "text_completion",
            "created": 0,
            "model": "smollm2-135m-instruct",
            "choices": [{"index": 0, "text": " there was", "finish_reason": "length"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 32, "total_tokens": 36},
        },
    ),
    "/v1/embeddings": _post(
        "openai_embeddings_create",
        "Embeddings (OpenAI-compatible)",
        EMBEDDING_REQUEST,
        {"model": "all-minilm-l6-v2", "input": ["a cat", "a dog"]},
        EMBEDDING_RESPONSE,
        {
            "object": "list",
            "model": "all-minilm-l6-v2",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.01, -0.02]}],
            "usage": {"prompt_tokens": 6, "completion_tokens": 0, "total_tokens": 6},
        },
    ),
    "/api/v1/predictions/{id}/stream": {
        "get": {
            "operationId": "predictions_stream",
            "tags": ["predictions"],
            "summary": "Server-Sent Events of a prediction, from an offset",
            "description": (
                "Events `status`, `output`, `log`, `error`, `done` as `id: <seq>` / "
                "`event: <type>` / `data: <json>`; `Last-Event-ID` or `?from=` resumes "
                "after that seq. Keep-alive comments at least every 15 s."
            ),
            "security": [{"bearerAuth": []}, {"cookieAuth": []}],
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "The event stream",
                    "content": {
                        "text/event-stream": {
                            "schema": SSE_EVENT,
                            "example": {"id": "3", "event": "output", "data": '" world"'},
                        }
                    },
                },
                **_errors(400, 401, 403, 404),
            },
        }
    },
}


# Every API operation may answer these (API.md, "Errors"); DRF views raise them from
# authentication, validation and scoping without declaring each one.
COMMON_ERRORS = {
    "get": (400, 401, 403, 404, 429),
    "post": (400, 401, 402, 403, 404, 410, 413, 429, 503),
    "put": (400, 401, 403, 404, 413, 429),
    "patch": (400, 401, 403, 404, 413, 429),
    "delete": (400, 401, 403, 404, 429),
}


def _document_common_errors(paths: dict) -> None:
    for path, operations in paths.items():
        if not path.startswith(("/api/v1/", "/v1/")):
            continue
        for method, operation in operations.items():
            documented = operation.setdefault("responses", {})
            for status, response in _errors(*COMMON_ERRORS.get(method, ())).items():
                documented.setdefault(status, response)


def add_async_endpoints(result: dict, generator, request, public) -> dict:
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    paths = result.setdefault("paths", {})
    paths.update(PATHS)
    _document_common_errors(paths)
    return result
