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
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from inference.loading import LoadedModel
from inference.runners.text_generation import (
    GenerationParams,
    IncrementalDecoder,
    TransformersBackend,
    sampling_processors,
    select_token,
)
from inference.spec import ModelSpec

logger = logging.getLogger(__name__)

# A batcher with nothing to do for this long stops its thread and lets go of the model,
# so a model the cache evicts is really freed.
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
        self.loaded = loaded
        self.eos_ids = eos_ids
        self.max_batch = max_batch
        self.window = window
        self.pad_id = _pad_id(loaded, eos_ids)
        self.incoming: queue.Queue[BatchRequest] = queue.Queue()
        self.batch_sizes: list[int] = []  # what ran, for tests and benchmarks
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- Consumer side -----------------------------------------------------------------

    def deltas(self, prompt: Sequence[int], params: GenerationParams) -> Iterator[str]:
        """Same contract as `TransformersBackend.deltas`, served from a shared batch."""
        if params.max_new_tokens < 1:
            return
        request = BatchRequest(list(prompt), params)
        self._submit(request)
        try:
            while (item := request.deltas.get()) is not END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.abandoned.set()

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
            self.batch_sizes.append(len(batch))
            try:
                self._run(batch)
            except Exception as exc:  # every waiting client must hear about it
                logger.exception("batched generation failed")
                for request in batch:
                    request.deltas.put(exc)

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
    def _run(self, batch: list[BatchRequest]) -> None:
        rows = [self._row(request) for request in batch]
        input_ids, mask = self._left_padded([request.prompt for request in batch])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        outputs = self._forward(input_ids, mask, positions, cache=None)
        while True:
            next_ids = self._step(rows, outputs.logits[:, -1, :])
            if all(row.done for row in rows):
                return
            alive = torch.tensor([[not row.done] for row in rows], device=mask.device)
            mask = torch.cat([mask, alive.to(mask.dtype)], dim=1)
            positions = positions[:, -1:] + 1
            outputs = self._forward(next_ids, mask, positions, cache=outputs.cache)

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

    def _row(self, request: BatchRequest) -> _Row:
        device = self.loaded.device
        return _Row(
            request=request,
            generator=torch.Generator(device=device).manual_seed(request.params.seed),
            processors=sampling_processors(request.params),
            decoder=IncrementalDecoder(self.loaded.tokenizer),
            prompt_ids=torch.tensor([request.prompt], device=device),
        )

    def _left_padded(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(prompt) for prompt in prompts)
        ids = [[self.pad_id] * (width - len(p)) + p for p in prompts]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
        device = self.loaded.device
        return torch.tensor(ids, device=device), torch.tensor(mask, device=device)

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any
    ) -> Any:
        return self.loaded.model(
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


_batchers: dict[int, GenerationBatcher] = {}
_batchers_lock = threading.Lock()


def batcher_for(
    loaded: LoadedModel, eos_ids: frozenset[int], max_batch: int, window: float
) -> GenerationBatcher:
    """One batcher per loaded model in this process."""
    with _batchers_lock:
        batcher = _batchers.get(id(loaded))
        if batcher is None:
            batcher = GenerationBatcher(loaded, eos_ids, max_batch, window)
            _batchers[id(loaded)] = batcher
        return batcher


def _forget(batcher: GenerationBatcher) -> None:
    with _batchers_lock:
        if _batchers.get(id(batcher.loaded)) is batcher:
            del _batchers[id(batcher.loaded)]


class BatchedTransformersBackend(TransformersBackend):
    """`TransformersBackend` whose tokens come from the model's shared batch."""

    def __init__(self, spec: ModelSpec, loaded: LoadedModel, max_batch: int, window: float):
        super().__init__(spec, loaded)
        self.batcher = batcher_for(loaded, self.eos_ids, max_batch, window)

    def deltas(self, prompt: Sequence[int], params: GenerationParams) -> Iterator[str]:
        return self.batcher.deltas(prompt, params)
