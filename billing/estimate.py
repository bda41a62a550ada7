"""The worst-case token count reserved at admission; exact counts arrive at settle."""

from __future__ import annotations

from typing import Any

from models_hub.models import ModelListing, Task

# About three characters per token for English text with these tokenizers: generous
# enough that a reservation rarely falls short, cheap enough to run on every request.
# Outside ASCII a character may be a token or more (CJK, emoji): each UTF-8 byte counts
# as one, the most a byte-level tokenizer can make of it. A call is never charged more
# than its reserved worst case, so an estimate that falls short costs us, not the caller.
CHARS_PER_TOKEN = 3
# The chat template's tokens around each message (role markers, separators).
TOKENS_PER_MESSAGE = 8


def _text_tokens(text: str) -> int:
    ascii_chars = sum(1 for char in text if char.isascii())
    other_bytes = len(text.encode("utf-8", "surrogatepass")) - ascii_chars
    return ascii_chars // CHARS_PER_TOKEN + other_bytes + 1


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def input_tokens(listing: ModelListing, data: dict[str, Any]) -> int:
    if listing.task == Task.TEXT_GENERATION:
        texts = _strings(data.get("prompt"))
        messages = [m for m in data.get("messages") or [] if isinstance(m, dict)]
        texts += [m.get("content", "") for m in messages]
        template = TOKENS_PER_MESSAGE * len(messages)
        return template + sum(_text_tokens(text) for text in texts if isinstance(text, str))
    elif listing.task == Task.EMBEDDINGS:
        texts = _strings(data.get("input"))
    else:
        texts = _strings(data.get("text")) + _strings(data.get("labels"))
    return sum(_text_tokens(text) for text in texts if isinstance(text, str))


def max_new_tokens(listing: ModelListing, data: dict[str, Any]) -> int:
    """The caller's max_new_tokens, else the listing's default, else its cap."""
    if listing.task != Task.TEXT_GENERATION:
        return 0
    for source in (data, listing.default_params, listing.max_params):
        value = source.get("max_new_tokens")
        if isinstance(value, int) and value > 0:
            return value
    return 0


def reservation_tokens(listing: ModelListing, data: dict[str, Any]) -> int:
    return input_tokens(listing, data) + max_new_tokens(listing, data)
