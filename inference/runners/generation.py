"""What every text-generation backend shares: sampling parameters, stop strings, and the
loop that turns a backend's per-token deltas into output events, counts and a result.

Pure Python: the backends that need torch import this, never the other way round.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from inference.runners.base import CancelCheck, Event, FinishReason, Metrics, Result
from inference.spec import ModelSpec

FALLBACK_MAX_NEW_TOKENS = 256
# Below this, sampling cannot be told from argmax, and float32 logits divided by the
# temperature overflow to inf (a temperature under ~1e-45 is zero in float32).
MIN_SAMPLING_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int

    @property
    def greedy(self) -> bool:
        return self.temperature < MIN_SAMPLING_TEMPERATURE


def resolve_params(spec: ModelSpec, data: dict[str, Any]) -> GenerationParams:
    """The caller's parameters, else the listing's defaults, else neutral values."""

    def pick(name: str, fallback: Any) -> Any:
        if data.get(name) is not None:
            return data[name]
        return spec.default_params.get(name, fallback)

    seed = pick("seed", None)
    max_new_tokens = int(pick("max_new_tokens", FALLBACK_MAX_NEW_TOKENS))
    cap = spec.max_params.get("max_new_tokens")
    if isinstance(cap, int) and cap > 0:
        # Validation caps what callers ask for; an omitted value falls back to a default
        # that may be above the listing's cap, so the cap applies here too.
        max_new_tokens = min(max_new_tokens, cap)
    return GenerationParams(
        max_new_tokens=max_new_tokens,
        temperature=float(pick("temperature", 0.0)),
        top_p=float(pick("top_p", 1.0)),
        stop=tuple(pick("stop", ())),
        seed=int(seed) if seed is not None else secrets.randbits(63),
    )


class StopMatcher:
    """Finds stop strings across token boundaries.

    Text that might be the start of a stop string is held back until the next delta
    shows whether it is; the stop string itself is never emitted.
    """

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def push(self, delta: str) -> tuple[str, bool]:
        """(text that is safe to emit, whether a stop string was reached)."""
        self.pending += delta
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            emit, self.pending = self.pending[: min(hits)], ""
            return emit, True
        hold = self._partial_suffix()
        cut = len(self.pending) - hold
        emit, self.pending = self.pending[:cut], self.pending[cut:]
        return emit, False

    def flush(self) -> str:
        emit, self.pending = self.pending, ""
        return emit

    def _partial_suffix(self) -> int:
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(self.pending)), longest, -1):
                if self.pending.endswith(stop[:size]):
                    longest = size
                    break
        return longest


class GenerationBackend(Protocol):
    uses_seed: bool
    context: int | None  # tokens, prompt and output together

    def encode(self, data: dict[str, Any]) -> Sequence[Any]:
        """The prompt as tokens; its length is the input token count."""

    def deltas(self, prompt: Sequence[Any], params: GenerationParams) -> Iterator[str]:
        """One text delta (maybe empty) per generated token, up to max_new_tokens or EOS."""


def stream_generation(
    backend: GenerationBackend,
    prompt: Sequence[Any],
    params: GenerationParams,
    should_cancel: CancelCheck,
    started: float,
) -> Iterator[Event]:
    """Output deltas then the result; stop strings, cancel and token counts live here."""
    stops = StopMatcher(params.stop)
    pieces: list[str] = []
    generated, first_token_at, finish = 0, None, None
    # Tokens generated since the last delta: a stop-string prefix holds text back, and
    # the delta that releases it carries those tokens too.
    held = 0
    deltas = backend.deltas(prompt, params)
    try:
        for delta in deltas:
            generated += 1
            held += 1
            first_token_at = first_token_at or time.perf_counter()
            text, stopped = stops.push(delta)
            if text:
                pieces.append(text)
                yield Event.output(text, held)
                held = 0
            if stopped:
                finish = FinishReason.STOP
                break
            if should_cancel():
                finish = FinishReason.CANCELED
                break
    finally:
        deltas.close()
    if finish != FinishReason.STOP:
        tail = stops.flush()
        if tail:
            pieces.append(tail)
            yield Event.output(tail, held)
    if finish is None:
        finish = FinishReason.LENGTH if generated >= params.max_new_tokens else FinishReason.STOP
    metrics = Metrics(
        input_tokens=len(prompt),
        output_tokens=generated,
        predict_time=time.perf_counter() - started,
        time_to_first_token=first_token_at - started if first_token_at else None,
    )
    yield Event.result(Result("".join(pieces), metrics, finish))
