"""Input validation before anything is queued: the listing's JSON Schema, the task's
rules, the listing's caps, then the model's own limits (prompt tokens against its context).

Every error is an `InvalidInput` (a 400) whose message and `param` name the field, e.g.
`input.max_new_tokens`; messages never echo the input back.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaViolation
from jsonschema.exceptions import best_match

from inference.images import image_fields
from inference.input_checks import check_input
from models_hub.models import ModelListing, Task
from portal import strict_json
from portal.errors import InvalidInput, Unavailable

logger = logging.getLogger(__name__)
TYPE_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def validate_input(listing: ModelListing, data: Any) -> dict[str, Any]:
    """The input to store and run, or InvalidInput naming the first bad field."""
    if not isinstance(data, dict):
        raise InvalidInput("input must be a JSON object.", param="input")
    check_storable(data)
    check_text_size(listing.max_params, _without_images(listing.task, data))
    check_schema(listing.input_schema, data)
    TASK_RULES.get(listing.task, _no_rules)(data)
    check_caps(listing.max_params, data)
    check_with_model(listing, data)
    return copy.deepcopy(data)


# --- Values JSON cannot carry ------------------------------------------------------------


def check_storable(data: dict[str, Any]) -> None:
    """What the JSON parsers refuse, checked again for every caller (a WebSocket frame,
    Python code): the database cannot store NUL or NaN, text with unpaired surrogates breaks
    every later read of the row, and the schema's range checks let NaN through (every
    comparison with it is false). First, and iterative, so nothing after it sees a deep input.
    """
    pending: list[tuple[str, Any, int]] = [("input", data, 1)]
    while pending:
        param, value, depth = pending.pop()
        if depth > strict_json.MAX_DEPTH:
            message = f"{param} is nested more than {strict_json.MAX_DEPTH} levels deep."
            raise InvalidInput(message, param=param)
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{param} must be a finite number.", param=param)
        if isinstance(value, str):
            _check_text(value, param)
        elif isinstance(value, dict):
            for key, child in value.items():
                _check_text(key, param)  # before the key is part of a name in a message
                pending.append((f"{param}.{key}", child, depth + 1))
        elif isinstance(value, list):
            pending.extend((f"{param}[{i}]", child, depth + 1) for i, child in enumerate(value))


def _check_text(text: str, param: str) -> None:
    try:
        strict_json.check_storable(text)
    except strict_json.UnsafeJSON as exc:
        raise InvalidInput(f"{param}: {exc}", param=param, code="malformed_json") from exc


# --- Size ------------------------------------------------------------------------------

# The listing cap that lowers settings.MAX_INPUT_CHARS for one model.
INPUT_CHARS_CAP = "max_input_chars"


def text_chars(value: Any) -> int:
    """Characters of every string value in the input: what tokenizers would chew on
    (keys are the schema's field names, and the body-size limit bounds any others).

    Iterative, so a deeply nested input cannot exhaust the stack here."""
    total, pending = 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return total


def _without_images(task: str, data: dict[str, Any]) -> dict[str, Any]:
    """An image (a data: URI, bounded by inference.images) is not text a tokenizer reads."""
    skipped = image_fields(task)
    return {key: value for key, value in data.items() if key not in skipped}


def input_chars_limit(caps: dict[str, Any]) -> int:
    limit = settings.MAX_INPUT_CHARS
    cap = caps.get(INPUT_CHARS_CAP)
    if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
        limit = min(limit, cap)
    return limit


def check_text_size(caps: dict[str, Any], data: dict[str, Any]) -> None:
    """Refused before the schema and the tokenizer run, whose cost grows with the text."""
    limit = input_chars_limit(caps)
    count = text_chars(data)
    if count > limit:
        raise InvalidInput(
            f"input is {count} characters of text, above this model's maximum of {limit}.",
            code="input_too_long",
            param="input",
        )


# --- JSON Schema -----------------------------------------------------------------------


def check_schema(schema: dict[str, Any], data: dict[str, Any]) -> None:
    error = best_match(Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        param, message = describe(error)
        raise InvalidInput(message, param=param)


def param_name(path: Iterable[Any]) -> str:
    name = "input"
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name


def describe(error: SchemaViolation) -> tuple[str, str]:
    """(param, message) in words a caller understands, without repeating their input."""
    param = param_name(error.absolute_path)
    rule, limit, instance = error.validator, error.validator_value, error.instance
    if rule == "required":
        missing = next(name for name in limit if name not in instance)
        return f"{param}.{missing}", f"{param}.{missing} is required."
    if rule == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        extra = sorted(name for name in instance if name not in known)[0]
        return f"{param}.{extra}", f"{param}.{extra} is not a field this model accepts."
    return param, f"{param} {_rule_message(rule, limit)}."


def _rule_message(rule: str, limit: Any) -> str:
    if rule == "type":
        names = [limit] if isinstance(limit, str) else limit
        return "must be " + " or ".join(TYPE_NAMES.get(name, name) for name in names)
    if rule == "enum":
        return "must be one of: " + ", ".join(map(str, limit))
    if rule == "minLength" and limit == 1:
        return "must not be empty"
    plural = "" if limit == 1 else "s"
    messages = {
        "minLength": f"must be at least {limit} characters",
        "maxLength": f"must be at most {limit} characters",
        "minimum": f"must be at least {limit}",
        "maximum": f"must be at most {limit}",
        "exclusiveMinimum": f"must be greater than {limit}",
        "exclusiveMaximum": f"must be less than {limit}",
        "minItems": f"must have at least {limit} item{plural}",
        "maxItems": f"must have at most {limit} item{plural}",
        "uniqueItems": "must not repeat an item",
        "const": f"must be {limit}",
        "pattern": "is not in the expected format",
        "anyOf": "is not any of the accepted forms",
        "oneOf": "is not exactly one of the accepted forms",
    }
    return messages.get(rule, "is not valid")


# --- Task rules and caps -----------------------------------------------------------------


def _no_rules(data: dict[str, Any]) -> None:
    return None


def text_generation_rules(data: dict[str, Any]) -> None:
    has_prompt, has_messages = "prompt" in data, "messages" in data
    if has_prompt and has_messages:
        raise InvalidInput("Give input.prompt or input.messages, not both.", param="input.messages")
    if not has_prompt and not has_messages:
        raise InvalidInput("input.prompt (or input.messages) is required.", param="input.prompt")
    if has_prompt and not data["prompt"].strip():
        raise InvalidInput("input.prompt must not be empty.", param="input.prompt")
    if has_messages and not any(m["content"].strip() for m in data["messages"]):
        raise InvalidInput("input.messages must contain some text.", param="input.messages")


def text_classification_rules(data: dict[str, Any]) -> None:
    if not data["text"].strip():
        raise InvalidInput("input.text must not be empty.", param="input.text")
    if any(not label.strip() for label in data.get("labels", [])):
        raise InvalidInput("input.labels must not contain an empty label.", param="input.labels")


def embeddings_rules(data: dict[str, Any]) -> None:
    texts = [data["input"]] if isinstance(data["input"], str) else data["input"]
    for index, text in enumerate(texts):
        if not text.strip():
            param = "input.input" if isinstance(data["input"], str) else f"input.input[{index}]"
            raise InvalidInput(f"{param} must not be empty.", param=param)


TASK_RULES: dict[str, Callable[[dict[str, Any]], None]] = {
    Task.TEXT_GENERATION: text_generation_rules,
    Task.EMBEDDINGS: embeddings_rules,
    Task.TEXT_CLASSIFICATION: text_classification_rules,
}


def check_caps(caps: dict[str, Any], data: dict[str, Any]) -> None:
    """The listing's maximums (e.g. max_new_tokens), whatever its schema says."""
    for name, cap in caps.items():
        if name == INPUT_CHARS_CAP:
            continue  # a cap on the input as a whole, checked by check_text_size
        value = data.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > cap:
            raise InvalidInput(
                f"input.{name} is {value}, above this model's maximum of {cap}.",
                param=f"input.{name}",
            )


def check_with_model(listing: ModelListing, data: dict[str, Any]) -> None:
    """Token counts need the model's tokenizer; a tokenizer that will not load is our fault."""
    try:
        check_input(listing.runtime_spec, data)
    except OSError as exc:
        logger.exception("Cannot load the tokenizer of %s", listing.slug, exc_info=exc)
        raise Unavailable(f"{listing.name} is not available right now.") from exc
