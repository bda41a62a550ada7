"""Input checks that need the model's tokenizer: prompt tokens against the context, texts
against what an encoder reads.

The web process runs them before anything is queued, counting with `inference.tokenizing`
(no torch). The runners apply the same rules to the counts they make anyway, so an input
the web could not count (see `token_counter`) is refused by the worker with the same
message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from inference.runners.echo import echo_text, split_pieces
from inference.spec import ModelSpec
from inference.tokenizing import TokenCounter, token_counter
from portal.errors import InvalidInput

# Tokenizers report a huge sentinel when they do not know the model's context.
UNKNOWN_CONTEXT = 10**7


def context_limit(spec: ModelSpec, tokenizer: Any) -> int | None:
    """The listing's context, else the tokenizer's (a transformers tokenizer or a
    `TokenCounter`: both have `model_max_length`)."""
    if spec.max_context:
        return spec.max_context
    known = getattr(tokenizer, "model_max_length", None)
    return known if known and known < UNKNOWN_CONTEXT else None


# --- Text generation -------------------------------------------------------------------


def chat_messages(data: dict[str, Any]) -> list[dict[str, str]]:
    if data.get("messages"):
        return [{"role": m["role"], "content": m["content"]} for m in data["messages"]]
    return [{"role": "user", "content": data["prompt"]}]


def plain_prompt(data: dict[str, Any]) -> str:
    """The prompt for a model without a chat template: messages become a transcript that
    ends where the assistant should speak."""
    if data.get("messages"):
        lines = [f"{m['role']}: {m['content']}" for m in data["messages"]]
        return "\n".join([*lines, "assistant:"])
    return data["prompt"]


def prompt_tokens(counter: TokenCounter, data: dict[str, Any]) -> int:
    """What the worker's `encode_prompt` counts: a rendered chat is encoded without the
    tokenizer's own special tokens (the template writes them), a plain prompt with them."""
    if counter.chat_template is not None:
        return counter.count(counter.render_chat(chat_messages(data)), add_special_tokens=False)
    return counter.count(plain_prompt(data))


def check_prompt_fits(count: int, limit: int | None, data: dict[str, Any]) -> None:
    """The prompt must leave room in the context, for the new tokens asked for if any."""
    if limit is None:
        return
    field = "input.messages" if data.get("messages") else "input.prompt"
    if count >= limit:
        raise InvalidInput(
            f"{field} is {count} tokens; this model's context is {limit} tokens.", param=field
        )
    requested = data.get("max_new_tokens")
    if requested is not None and count + requested > limit:
        raise InvalidInput(
            f"input.max_new_tokens is {requested}, but the prompt is {count} tokens and "
            f"this model's context is {limit}: at most {limit - count} new tokens fit.",
            param="input.max_new_tokens",
        )


def check_text_generation(spec: ModelSpec, data: dict[str, Any]) -> None:
    if spec.parsed_source.is_builtin:
        check_prompt_fits(len(split_pieces(echo_text(data))), spec.max_context, data)
        return
    counter = token_counter(spec)
    if counter is None:
        return  # counted and checked by the worker (`TextGenerationRunner.run`)
    check_prompt_fits(prompt_tokens(counter, data), context_limit(spec, counter), data)


# --- Encoders ----------------------------------------------------------------------------


def embedding_texts(data: dict[str, Any]) -> list[str]:
    raw = data["input"]
    return [raw] if isinstance(raw, str) else list(raw)


def embedding_params(data: dict[str, Any]) -> list[str]:
    """The name of each text, for error messages."""
    if isinstance(data["input"], str):
        return ["input.input"]
    return [f"input.input[{index}]" for index in range(len(data["input"]))]


def check_text_lengths(spec: ModelSpec, counts: Sequence[int], params: Sequence[str]) -> None:
    """Over-long texts are refused rather than silently truncated; `params` name each text."""
    if not spec.max_context:
        return
    for param, count in zip(params, counts, strict=True):
        if count > spec.max_context:
            raise InvalidInput(
                f"{param} is {count} tokens; this model reads at most {spec.max_context}.",
                param=param,
            )


def check_encoder_texts(spec: ModelSpec, texts: Sequence[str], params: Sequence[str]) -> None:
    if not spec.max_context:
        return
    counter = token_counter(spec)
    if counter is None:
        return  # counted and checked by the worker (`check_token_counts`)
    check_text_lengths(spec, [counter.count(text) for text in texts], params)


def check_embeddings(spec: ModelSpec, data: dict[str, Any]) -> None:
    check_encoder_texts(spec, embedding_texts(data), embedding_params(data))


def check_classification(spec: ModelSpec, data: dict[str, Any]) -> None:
    check_encoder_texts(spec, [data["text"]], ["input.text"])


# Keyed by `models_hub.models.Task` values; a task without token limits has no entry.
INPUT_CHECKS: dict[str, Callable[[ModelSpec, dict[str, Any]], None]] = {
    "text-generation": check_text_generation,
    "embeddings": check_embeddings,
    "text-classification": check_classification,
}


def check_input(spec: ModelSpec, data: dict[str, Any]) -> None:
    """Checks that need the model's tokenizer; `data` has passed the listing's schema.

    Raises InvalidInput, or OSError when the tokenizer's files cannot be read.
    """
    check = INPUT_CHECKS.get(spec.task)
    if check is not None:
        check(spec, data)
