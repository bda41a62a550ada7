"""Sentence embeddings: mean pooling over the last hidden state, L2-normalized."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from inference.input_checks import check_text_lengths, embedding_params, embedding_texts
from inference.loading import Arch, LoadedModel, get_model
from inference.runners.base import CancelCheck, Event, FinishReason, Metrics, Result, never_cancel
from inference.spec import ModelSpec

# Texts per forward pass; a large request is split so memory stays bounded and a cancel
# is noticed between batches.
DEFAULT_BATCH_SIZE = 64


def token_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(list(texts))["input_ids"]]


@torch.inference_mode()
def embed(
    loaded: LoadedModel, texts: Sequence[str], max_length: int | None
) -> tuple[torch.Tensor, int]:
    """(unit vectors, one row per text; the number of tokens the model read)."""
    encoded = loaded.tokenizer(
        list(texts),
        padding=True,
        truncation=max_length is not None,
        max_length=max_length,
        return_tensors="pt",
    ).to(loaded.device)
    hidden = loaded.model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    vectors = F.normalize(pooled.float(), dim=-1)
    return vectors, int(encoded["attention_mask"].sum())


def check_token_counts(
    spec: ModelSpec, loaded: LoadedModel, texts: Sequence[str], params: Sequence[str]
) -> None:
    """The web's length check on this worker's counts, for a model the web could not
    count for (see `inference.tokenizing.token_counter`): `embed` would truncate."""
    if spec.max_context:
        check_text_lengths(spec, token_counts(loaded.tokenizer, texts), params)


class EmbeddingsRunner:
    task = "embeddings"

    def run(
        self, spec: ModelSpec, data: dict[str, Any], should_cancel: CancelCheck = never_cancel
    ) -> Iterator[Event]:
        loaded = get_model(spec, Arch.ENCODER)
        started = time.perf_counter()  # once the model is in memory, as for generation
        texts = embedding_texts(data)
        check_token_counts(spec, loaded, texts, embedding_params(data))
        batch_size = int(spec.options.get("batch_size", DEFAULT_BATCH_SIZE))
        vectors: list[list[float]] = []
        tokens = 0
        finish = FinishReason.STOP
        for start in range(0, len(texts), batch_size):
            if should_cancel():
                finish = FinishReason.CANCELED
                break
            batch, count = embed(loaded, texts[start : start + batch_size], spec.max_context)
            vectors.extend(batch.cpu().tolist())
            tokens += count
        metrics = Metrics(tokens, 0, time.perf_counter() - started)
        yield Event.result(Result(vectors, metrics, finish))
