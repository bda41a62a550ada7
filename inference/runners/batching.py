"""Batching of concurrent generations of the same model inside one worker process.

A worker that runs several predictions at once (Celery's threads pool, `--concurrency N`)
would otherwise run one forward pass per request per token; on a GPU each pass is mostly
waiting on memory, so B requests in one pass cost about what one does. Each loaded model
gets a `GenerationBatcher`: requests that arrive while it is idle, or within
`GENERATION_BATCH_WINDOW_MS` of the first, run together as one batch (static batching:
requests that arrive mid-batch wait for the next one). Prompts are left-padded; a row that
ends (EOS, its own max_new_tokens, or its consumer went away) is masked out and its
client is told at once, while the others go on.

Each row keeps its own sampling parameters, seeded generator and incremental decoder, so
a request streams exactly the deltas it would unbatched (token for token with greedy
decoding, up to floating-point differences of the batched matmuls).

A batcher lives exactly as long as its model: the registry is keyed weakly on the loaded
model, and the batcher and its thread hold the model only weakly between batches, so a
model the cache evicts is freed (and its GPU memory given back) once its last stream ends.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from inference.loading import LoadedModel
from inference.runners.generation import GenerationParams
from inference.runners.transformers_backend import (
    IncrementalDecoder,
    TransformersBackend,
    sampling_processors,
    select_token,
)
from inference.spec import ModelSpec

logger = logging.getLogger(__name__)

# A batcher with nothing to do for this long stops its thread (it holds the model only
# weakly meanwhile, so this bounds idle threads, not memory).
IDLE_SECONDS = 30.0
END = object()


@dataclass
class BatchRequest:
    prompt: list[int]
    params: GenerationParams
    deltas: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    # Set by the consumer when it stops reading (cancel, stop string, disconnect).
    abandoned: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Row:
    request: BatchRequest
    generator: torch.Generator
    processors: Any
    decoder: Any
    prompt_ids: torch.Tensor
    steps: int = 0
    done: bool = False

    def finish(self, last_delta: str | None = None) -> None:
        if last_delta:
            self.request.deltas.put(last_delta)
        self.request.deltas.put(END)
        self.done = True


class GenerationBatcher:
    def __init__(self, loaded: LoadedModel, eos_ids: frozenset[int], max_batch: int, window: float):
        # Weak: the registry maps the model to this batcher, and its thread outlives the
        # last batch by IDLE_SECONDS; a strong reference would keep an evicted model alive.
        self._loaded = weakref.ref(loaded)
        self.eos_ids = eos_ids
        self.max_batch = max_batch
        self.window = window
        self.pad_id = _pad_id(loaded, eos_ids)
        self.incoming: queue.Queue[BatchRequest] = queue.Queue()
        # How many batches ran at each size, for tests and benchmarks: bounded by max_batch.
        self.batch_sizes: Counter[int] = Counter()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> LoadedModel:
        loaded = self._loaded()
        if loaded is None:
            # Only reachable by a caller that streams without holding the model.
            raise RuntimeError("This batcher's model has been unloaded.")
        return loaded

    # --- Consumer side -----------------------------------------------------------------

    def deltas(self, prompt: Sequence[int], params: GenerationParams) -> Iterator[str]:
        """Same contract as `TransformersBackend.deltas`, served from a shared batch."""
        if params.max_new_tokens < 1:
            return
        request = BatchRequest(list(prompt), params)
        # Each stream holds the model until it ends, so no batch outlives its model.
        model = self.loaded
        self._submit(request)
        try:
            while (item := request.deltas.get()) is not END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.abandoned.set()
            del model

    def _submit(self, request: BatchRequest) -> None:
        with self._lock:
            self.incoming.put(request)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="generation-batcher", daemon=True
                )
                self._thread.start()

    # --- Scheduler thread ----------------------------------------------------------------

    def _serve(self) -> None:
        while batch := self._next_batch():
            self.batch_sizes[len(batch)] += 1
            try:
                self._run(batch, self.loaded)
            except Exception as exc:  # every waiting client must hear about it
                logger.exception("batched generation failed")
                for request in batch:
                    request.deltas.put(exc)
            # Not kept while idle: an abandoned request's error holds the model's frames.
            del batch

    def _next_batch(self) -> list[BatchRequest]:
        try:
            first = self.incoming.get(timeout=IDLE_SECONDS)
        except queue.Empty:
            with self._lock:
                # A request that slipped in while timing out is served, not stranded.
                if self.incoming.empty():
                    self._thread = None
                    return []
            first = self.incoming.get()
        batch = [first]
        deadline = time.monotonic() + self.window
        while len(batch) < self.max_batch:
            try:
                batch.append(self.incoming.get(timeout=max(deadline - time.monotonic(), 0)))
            except queue.Empty:
                break
        return [request for request in batch if not request.abandoned.is_set()]

    @torch.inference_mode()
    def _run(self, batch: list[BatchRequest], loaded: LoadedModel) -> None:
        rows = [self._row(request, loaded) for request in batch]
        input_ids, mask = self._left_padded([request.prompt for request in batch], loaded.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        outputs = self._forward(loaded, input_ids, mask, positions, cache=None)
        while True:
            next_ids = self._step(rows, outputs.logits[:, -1, :])
            if all(row.done for row in rows):
                return
            alive = torch.tensor([[not row.done] for row in rows], device=mask.device)
            mask = torch.cat([mask, alive.to(mask.dtype)], dim=1)
            positions = positions[:, -1:] + 1
            outputs = self._forward(loaded, next_ids, mask, positions, cache=outputs.cache)

    def _step(self, rows: list[_Row], logits: torch.Tensor) -> torch.Tensor:
        """Picks each live row's next token and streams it; returns the next input ids."""
        next_ids = torch.full((len(rows), 1), self.pad_id, device=logits.device)
        for index, row in enumerate(rows):
            if row.done:
                continue
            if row.request.abandoned.is_set():
                row.finish()
                continue
            token_id = select_token(
                logits[index : index + 1], row.prompt_ids, row.processors, row.generator
            )
            token = int(token_id)
            row.steps += 1
            if token in self.eos_ids:
                row.finish()
            elif row.steps == row.request.params.max_new_tokens:
                row.finish(row.decoder.push(token) + row.decoder.flush())
            else:
                row.request.deltas.put(row.decoder.push(token))
                next_ids[index, 0] = token
        return next_ids

    @staticmethod
    def _row(request: BatchRequest, loaded: LoadedModel) -> _Row:
        device = loaded.device
        return _Row(
            request=request,
            generator=torch.Generator(device=device).manual_seed(request.params.seed),
            processors=sampling_processors(request.params),
            decoder=IncrementalDecoder(loaded.tokenizer),
            prompt_ids=torch.tensor([request.prompt], device=device),
        )

    def _left_padded(
        self, prompts: list[list[int]], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(prompt) for prompt in prompts)
        ids = [[self.pad_id] * (width - len(p)) + p for p in prompts]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
        return torch.tensor(ids, device=device), torch.tensor(mask, device=device)

    @staticmethod
    def _forward(
        loaded: LoadedModel,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
    ) -> Any:
        return loaded.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )


def _pad_id(loaded: LoadedModel, eos_ids: frozenset[int]) -> int:
    pad = getattr(loaded.tokenizer, "pad_token_id", None)
    return pad if pad is not None else min(eos_ids, default=0)


# Keyed on the model object itself, weakly: an entry goes when its model is freed, and a
# new model can never be handed the batcher of an old one that had the same id().
_batchers: weakref.WeakKeyDictionary[LoadedModel, GenerationBatcher] = weakref.WeakKeyDictionary()
_batchers_lock = threading.Lock()


def batcher_for(
    loaded: LoadedModel, eos_ids: frozenset[int], max_batch: int, window: float
) -> GenerationBatcher:
    """One batcher per loaded model in this process."""
    with _batchers_lock:
        batcher = _batchers.get(loaded)
        if batcher is None:
            batcher = GenerationBatcher(loaded, eos_ids, max_batch, window)
            _batchers[loaded] = batcher
        return batcher


class BatchedTransformersBackend(TransformersBackend):
    """`TransformersBackend` whose tokens come from the model's shared batch."""

    def __init__(self, spec: ModelSpec, loaded: LoadedModel, max_batch: int, window: float):
        super().__init__(spec, loaded)
        # The batcher holds its model weakly; this backend's streams keep it alive.
        self.loaded = loaded
        self.batcher = batcher_for(loaded, self.eos_ids, max_batch, window)

    def deltas(self, prompt: Sequence[int], params: GenerationParams) -> Iterator[str]:
        return self.batcher.deltas(prompt, params)
