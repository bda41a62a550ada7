"""Text generation with a transformers causal LM, one request at a time.

Streaming runs a token loop in the caller's thread: one forward pass per token with the
model's KV cache, then the token is decoded and yielded before the next pass starts. So
there is no thread hop per token (as with `generate()` + `TextIteratorStreamer`), the
consumer sees each token as soon as it exists, and stopping (a stop string, a cancel, or
the consumer closing the generator) never computes a token nobody reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from inference.input_checks import chat_messages, context_limit, plain_prompt
from inference.loading import LoadedModel
from inference.runners.generation import GenerationParams
from inference.spec import ModelSpec


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
