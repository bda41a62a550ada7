"""One JSON reader for everything a client sends (REST, /v1, WebSocket frames).

A body that the standard library accepts can still break us later:
- NUL (`\\u0000`): PostgreSQL `text` and `jsonb` refuse it, so the INSERT fails as a 500;
- an unpaired surrogate (`"\\ud800"`): it is stored, then every read that encodes the row
  as UTF-8 fails, so one row breaks the org's prediction list for good;
- `NaN`, `Infinity`: not JSON at all (RFC 8259), and they slip through numeric range checks;
- absurd nesting: the decoder recurses and a deep enough document is a RecursionError.
Each is refused here, at parse time, with one exception type the callers turn into a 400.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Far deeper than any real input schema needs, far below the interpreter's recursion limit.
MAX_DEPTH = 64


class UnsafeJSON(ValueError):
    """The text is not JSON we are willing to store; the message is safe to show a client."""


def _refuse_constant(name: str) -> Any:
    raise UnsafeJSON(f"{name} is not a JSON number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnsafeJSON(f"{text} is too large for a JSON number.")
    return value


def _check_depth(text: str) -> None:
    """Counts brackets outside strings before decoding, so the decoder never recurses deep."""
    depth = 0
    in_string = False
    escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise UnsafeJSON(f"The JSON is nested more than {MAX_DEPTH} levels deep.")
        elif char in "]}":
            depth -= 1


def _check_text(value: str) -> None:
    if "\x00" in value:
        raise UnsafeJSON("Text in the body may not contain the NUL character (\\u0000).")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsafeJSON("Text in the body may not contain unpaired surrogates.") from exc


def check_storable(value: Any) -> None:
    """Raises UnsafeJSON if any key or string inside `value` cannot be stored and read back."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def loads(raw: bytes | str) -> Any:
    """Decodes JSON a client sent; raises UnsafeJSON (a ValueError) for anything refused."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError as exc:
        raise UnsafeJSON("The body is not UTF-8.") from exc
    _check_depth(text)
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnsafeJSON:
        raise
    except (ValueError, RecursionError) as exc:
        raise UnsafeJSON("The body is not valid JSON.") from exc
    check_storable(value)
    return value
