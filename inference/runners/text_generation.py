"""Text generation: chat template, sampling parameters, stop strings, token streaming.

Streaming runs a token loop in the caller's thread: one forward pass per token with the
model's KV cache, then the token is decoded and yielded before the next pass starts. So
there is no thread hop per token (as with `generate()` + `TextIteratorStreamer`), the
consumer sees each token as soon as it exists, and stopping (a stop string, a cancel, or
the consumer closing the generator) never computes a token nobody reads.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch
from django.conf import settings
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from inference.input_checks import chat_messages, check_prompt_fits, context_limit, plain_prompt
from inference.loading import Arch, LoadedModel, get_model
from inference.runners.base import (
    CancelCheck,
    Event,
    FinishReason,
    Metrics,
    Result,
    never_cancel,
)
from inference.runners.echo import EchoBackend
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


def encode_prompt(tokenizer: Any, data: dict[str, Any]) -> list[int]:
    """Token ids of the prompt as the model will see it (through its chat template if any)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            chat_messages(data), add_generation_prompt=True, tokenize=False
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(plain_prompt(data))["input_ids"]


class IncrementalDecoder:
    """Turns token ids into text deltas whose concatenation is the decoded text.

    Decoding only a sliding window (the previous token(s) for context plus the new one)
    keeps each step O(1); a delta ending in U+FFFD is an incomplete UTF-8 character and is
    held back until the next token completes it.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        return self._delta(final=False)

    def flush(self) -> str:
        return self._delta(final=True)

    def _delta(self, final: bool) -> str:
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        if len(new_text) <= len(prefix_text) or (new_text.endswith("\ufffd") and not final):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return new_text[len(prefix_text) :]


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


class TransformersBackend:
    uses_seed = True

    def __init__(self, spec: ModelSpec, loaded: LoadedModel):
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.context = context_limit(spec, loaded.tokenizer)
        self.device = loaded.device
        self.eos_ids = eos_token_ids(loaded)

    def encode(self, data: dict[str, Any]) -> list[int]:
        return encode_prompt(self.tokenizer, data)

    def deltas(self, prompt: Sequence[int], params: GenerationParams) -> Iterator[str]:
        if params.max_new_tokens < 1:
            return
        generator = torch.Generator(device=self.device).manual_seed(params.seed)
        processors = sampling_processors(params)
        decoder = IncrementalDecoder(self.tokenizer)
        # Temperature and top-p look only at the logits, so the processors get the prompt
        # ids rather than a sequence re-concatenated at every step.
        input_ids = torch.tensor([list(prompt)], device=self.device)
        outputs = self._forward(input_ids, cache=None)
        for step in range(params.max_new_tokens):
            next_id = select_token(outputs.logits[:, -1, :], input_ids, processors, generator)
            token = int(next_id)
            if token in self.eos_ids:
                # Text still held back here is half a character: nothing to show.
                return
            if step + 1 == params.max_new_tokens:
                yield decoder.push(token) + decoder.flush()
                return
            yield decoder.push(token)
            outputs = self._forward(next_id.view(1, 1), cache=outputs.cache)

    @torch.inference_mode()
    def _forward(self, input_ids: torch.Tensor, cache: Any) -> Any:
        # logits_to_keep=1: the prompt's other positions need no vocabulary projection.
        return self.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)


def eos_token_ids(loaded: LoadedModel) -> frozenset[int]:
    configured = getattr(loaded.model.generation_config, "eos_token_id", None)
    ids = list(configured) if isinstance(configured, list) else [configured]
    ids.append(loaded.tokenizer.eos_token_id)
    return frozenset(i for i in ids if i is not None)


def sampling_processors(params: GenerationParams) -> LogitsProcessorList:
    processors = LogitsProcessorList()
    if params.greedy:
        return processors
    processors.append(TemperatureLogitsWarper(params.temperature))
    if params.top_p < 1.0:
        processors.append(TopPLogitsWarper(params.top_p))
    return processors


@torch.inference_mode()
def select_token(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    processors: LogitsProcessorList,
    generator: torch.Generator,
) -> torch.Tensor:
    """Greedy when there are no processors (temperature about 0), else a seeded sample."""
    # fp32 first: on CPU an argmax over a bf16 vocabulary is several times slower.
    scores = logits.float()
    if not processors:
        return scores.argmax(dim=-1)
    scores = processors(input_ids, scores)
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


class TextGenerationRunner:
    task = "text-generation"

    def backend(self, spec: ModelSpec, data: dict[str, Any]) -> GenerationBackend:
        if spec.parsed_source.is_builtin:
            return EchoBackend(spec, data)
        loaded = get_model(spec, Arch.CAUSAL_LM)
        if settings.GENERATION_MAX_BATCH > 1:
            # Imported here: the batching module builds on this one.
            from inference.runners.batching import BatchedTransformersBackend

            window = settings.GENERATION_BATCH_WINDOW_MS / 1000
            return BatchedTransformersBackend(spec, loaded, settings.GENERATION_MAX_BATCH, window)
        return TransformersBackend(spec, loaded)

    def run(
        self, spec: ModelSpec, data: dict[str, Any], should_cancel: CancelCheck = never_cancel
    ) -> Iterator[Event]:
        backend = self.backend(spec, data)
        # Timing starts once the model is in memory: a cold load is not prediction time.
        started = time.perf_counter()
        params = resolve_params(spec, data)
        prompt = backend.encode(data)
        # The web checked this already when it could count for the model (see
        # `inference.tokenizing.token_counter`); the same rule here covers when it could not.
        check_prompt_fits(len(prompt), backend.context, data)
        if backend.context:
            # An unset max_new_tokens must not run past the context either.
            room = max(backend.context - len(prompt), 0)
            params = replace(params, max_new_tokens=min(params.max_new_tokens, room))
        if backend.uses_seed and not params.greedy:
            yield Event.log(f"Using seed: {params.seed}")
        yield from stream_generation(backend, prompt, params, should_cancel, started)


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
