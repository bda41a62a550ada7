"""`builtin:echo`: a diagnostic text-generation model with no weights.

It streams its input back, one word-piece per token, at a fixed rate (`tokens_per_second`
from the listing's options, or from the input when the listing's schema allows it; 0
means as fast as possible). Tests and benchmarks use it to exercise the whole prediction
pipeline without loading a model.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from inference.spec import ModelSpec

if TYPE_CHECKING:
    from inference.runners.generation import GenerationParams

DEFAULT_TOKENS_PER_SECOND = 20.0
# A token is a run of non-space characters with the whitespace before it, like the
# leading-space pieces of a BPE vocabulary; joining the pieces gives the text back.
PIECE_RE = re.compile(r"\s*\S+|\s+")


def split_pieces(text: str) -> list[str]:
    return PIECE_RE.findall(text)


def echo_text(data: dict[str, Any]) -> str:
    """The prompt, or the last user message of a chat."""
    if data.get("messages"):
        users = [m["content"] for m in data["messages"] if m["role"] == "user"]
        return users[-1] if users else data["messages"][-1]["content"]
    return data["prompt"]


class EchoBackend:
    uses_seed = False

    def __init__(self, spec: ModelSpec, data: dict[str, Any]):
        rate = data.get("tokens_per_second")
        if rate is None:
            rate = spec.options.get("tokens_per_second", DEFAULT_TOKENS_PER_SECOND)
        self.tokens_per_second = float(rate)
        self.context = spec.max_context

    def encode(self, data: dict[str, Any]) -> list[str]:
        return split_pieces(echo_text(data))

    def deltas(self, prompt: Sequence[str], params: GenerationParams) -> Iterator[str]:
        interval = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        started = time.monotonic()
        for index, piece in enumerate(prompt[: params.max_new_tokens]):
            # Pace against the start time so that sleep overshoot does not accumulate.
            delay = started + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield piece
