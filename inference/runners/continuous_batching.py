"""Continuous batching of concurrent generations of one model inside one worker process.

A worker that runs several predictions at once (Celery's threads pool) shares each
model's forward passes among them. With static batching (`batching.py`) a request that
arrives while a batch runs waits for the whole batch to end; here it joins the running
batch at the next step, so its first token does not wait for others' last tokens.

The engine is transformers' own `ContinuousBatchingManager` (paged KV cache, chunked
prefill, per-request `max_new_tokens` and EOS, cancel at the next step). This module adds
only what the runner needs and the manager lacks, each said where it is done:

- per-thread streams: the manager delivers outputs to asyncio loops or to one shared
  queue that every consumer would poll and re-queue; `_StreamRouter` hands each request's
  outputs to its own queue instead;
- per-request sampling with a per-request seed: the manager samples every row with one
  global generator and one `do_sample` for all; `_SeededSampling` draws each sampled
  row's token with that request's own generator and processors, exactly as the
  unbatched backend does, and greedy rows keep the manager's argmax;
- decoding and stop strings stay the runner's (`stream_generation`); a consumer that
  stops reading (stop string, cancel, disconnect) cancels its request.

One manager per loaded model, started on first use and stopped when the model is freed
(the batcher holds the model weakly; the streams in flight hold it strongly).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from django.conf import settings
from transformers import GenerationConfig, LogitsProcessorList
from transformers.generation.configuration_utils import ContinuousBatchingConfig
from transformers.generation.continuous_batching.cb_logits_processors import (
    ContinuousBatchingLogitsProcessor,
    ContinuousBatchingLogitsProcessorList,
)
from transformers.generation.continuous_batching.continuous_api import (
    ContinuousBatchingManager,
    OutputRouter,
)
from transformers.generation.continuous_batching.requests import GenerationOutput, RequestStatus

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

CPU_BATCH_TOKENS = 512
CPU_REQUEST_TOKENS = 512
STOP_TIMEOUT = 5.0
GREEDY = -1  # a row's sampling handle when the manager's argmax picks its token


class GenerationFailed(RuntimeError):
    """This request's generation failed; the others in its batch go on."""


@dataclass
class _RowSampling:
    generator: torch.Generator
    processors: LogitsProcessorList
    prompt_ids: torch.Tensor
    error: Exception | None = None


class _SeededSampling(ContinuousBatchingLogitsProcessor):
    """Draws each sampled row's next token with its own request's seeded generator.

    Runs as the manager's only logits processor, with the manager set to greedy: a
    sampled row's scores come back with every token but the drawn one at -inf, so the
    manager's argmax picks the drawn token; greedy rows pass through untouched. Each row
    is told apart by an integer handle that travels in the manager's per-row argument
    tensor, so a batch prepared ahead of the one computing never reads the wrong row.
    """

    supported_kwargs: dict[str, type] = {}
    ignored_kwargs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._handles = itertools.count()
        self._by_request: dict[str, int] = {}
        self._rows: dict[int, _RowSampling] = {}

    def add(self, request_id: str, row: _RowSampling) -> None:
        handle = next(self._handles)
        self._rows[handle] = row
        self._by_request[request_id] = handle

    def remove(self, request_id: str) -> None:
        handle = self._by_request.pop(request_id, None)
        self._rows.pop(handle, None)

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.fill_(GREEDY)

    def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
        by_request = self._by_request
        handles = [by_request.get(r.state.request_id, GREEDY) for r in requests_with_new_token]
        return torch.tensor(handles, dtype=torch.int32)

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        for index, handle in enumerate(tensor_arg[: scores.size(0)].tolist()):
            row = self._rows.get(handle) if handle != GREEDY else None
            if row is None or row.error is not None:
                continue
            try:
                token = int(
                    select_token(
                        scores[index : index + 1], row.prompt_ids, row.processors, row.generator
                    )
                )
            except Exception as exc:  # one request's sampling must not fail the batch
                row.error = exc
                continue
            scores[index].fill_(float("-inf"))
            scores[index, token] = 0.0
        return scores


class _SamplingList(ContinuousBatchingLogitsProcessorList):
    def __init__(self, sampling: _SeededSampling) -> None:
        super().__init__(LogitsProcessorList([sampling]))
        # The list counts argument rows only for the processors it converts itself.
        self.tensors_required = 1


class _StreamRouter(OutputRouter):
    """Each request's outputs go to its own queue, read by the thread that streams it."""

    def __init__(self) -> None:
        super().__init__()
        self.streams: dict[str, queue.SimpleQueue[GenerationOutput]] = {}

    def open(self, request_id: str) -> queue.SimpleQueue[GenerationOutput]:
        stream: queue.SimpleQueue[GenerationOutput] = queue.SimpleQueue()
        self.streams[request_id] = stream
        return stream

    def close(self, request_id: str) -> None:
        self.streams.pop(request_id, None)

    def deliver(self, output: GenerationOutput) -> None:
        stream = self.streams.get(output.request_id)
        if stream is not None:  # else its consumer has gone: nobody reads it
            stream.put(output)

    def deliver_batch(self, outputs: list[GenerationOutput]) -> None:
        for output in outputs:
            self.deliver(output)


@dataclass
class _Engine:
    manager: ContinuousBatchingManager
    router: _StreamRouter
    sampling: _SeededSampling


def kv_cache_config(device: torch.device, max_batch: int) -> ContinuousBatchingConfig:
    """The paged cache from settings (see `GENERATION_KV_*` in portal/settings.py)."""
    on_gpu = device.type == "cuda"
    page_size = settings.GENERATION_KV_PAGE_SIZE or (256 if on_gpu else 64)
    # On a CPU a forward pass over thousands of tokens takes seconds, and the attention
    # mask grows with its square: long prompts are prefilled in smaller chunks there.
    batch_tokens = settings.GENERATION_MAX_BATCH_TOKENS or (None if on_gpu else CPU_BATCH_TOKENS)
    return ContinuousBatchingConfig(
        page_size=page_size,
        num_blocks=settings.GENERATION_KV_BLOCKS or _cpu_blocks(on_gpu, max_batch, page_size),
        max_memory_percent=(settings.GENERATION_KV_MEMORY_PERCENT or 90) / 100,
        max_batch_tokens=batch_tokens,
        max_requests_per_batch=max_batch,
        # The per-row sampler reads its handles on the host, which a captured graph
        # cannot; flash attention is not installed, so the model keeps its own kernels.
        use_cuda_graph=False,
        auto_switch_to_flash=False,
    )


def _cpu_blocks(on_gpu: bool, max_batch: int, page_size: int) -> int | None:
    """On a CPU, room for a full batch of CPU_REQUEST_TOKENS-token requests: a share of
    free RAM (every other process shares it) left the cache too small for a batch of 32,
    which then evicted and recomputed requests. None: sized from free memory."""
    if on_gpu or settings.GENERATION_KV_MEMORY_PERCENT:
        return None
    return max_batch * -(-CPU_REQUEST_TOKENS // page_size)


class ContinuousBatcher:
    def __init__(self, loaded: LoadedModel, eos_ids: frozenset[int], max_batch: int):
        self._loaded = weakref.ref(loaded)
        self.eos_ids = eos_ids
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._engine: _Engine | None = None
        # The manager holds the model strongly; it stops once the model is freed.
        weakref.finalize(loaded, ContinuousBatcher._stop_engine, weakref.ref(self))

    @property
    def steps(self) -> int:
        """Forward passes run so far by the current engine (tests and benchmarks)."""
        engine = self._engine
        return getattr(engine.manager, "current_batch", 0) if engine else 0

    def deltas(self, prompt: Sequence[int], params: GenerationParams) -> Iterator[str]:
        """Same contract as `TransformersBackend.deltas`, served from the running batch."""
        if params.max_new_tokens < 1:
            return
        loaded = self._loaded()
        if loaded is None:
            raise RuntimeError("This batcher's model has been unloaded.")
        request_id = uuid.uuid4().hex
        row = None if params.greedy else _row_sampling(prompt, params, loaded.device)
        engine, stream = self._submit(loaded, request_id, prompt, params, row)
        decoder = IncrementalDecoder(loaded.tokenizer)
        finished = False
        try:
            for count, token in enumerate(self._tokens(stream, row), start=1):
                if count == params.max_new_tokens:
                    finished = True
                    yield decoder.push(token) + decoder.flush()
                    return
                yield decoder.push(token)
            finished = True  # EOS
        finally:
            if not finished:  # the consumer stopped reading, or this request failed
                engine.manager.cancel_request(request_id)
            engine.router.close(request_id)
            engine.sampling.remove(request_id)

    def _tokens(
        self, stream: queue.SimpleQueue[GenerationOutput], row: _RowSampling | None
    ) -> Iterator[int]:
        """Each new token until EOS (not yielded) or the request's end."""
        seen = 0
        while True:
            output = stream.get()
            if row is not None and row.error is not None:
                raise GenerationFailed(f"Sampling failed: {row.error}") from row.error
            if output.status == RequestStatus.FAILED:
                raise GenerationFailed(output.error or "Generation failed.")
            new, seen = output.generated_tokens[seen:], len(output.generated_tokens)
            for token in new:
                if token in self.eos_ids:
                    return
                yield token
            if output.is_finished():
                return

    def _submit(
        self,
        loaded: LoadedModel,
        request_id: str,
        prompt: Sequence[int],
        params: GenerationParams,
        row: _RowSampling | None,
    ) -> tuple[_Engine, queue.SimpleQueue[GenerationOutput]]:
        with self._lock:
            engine = self._engine
            if engine is None or not engine.manager.is_running():
                # First use, or its loop died (its requests were failed): a fresh one.
                engine = self._engine = _start_engine(loaded, self.eos_ids, self.max_batch)
            stream = engine.router.open(request_id)
            if row is not None:
                engine.sampling.add(request_id, row)
            accepted = engine.manager.add_request(
                list(prompt),
                request_id=request_id,
                max_new_tokens=params.max_new_tokens,
                streaming=True,
                eos_token_id=sorted(self.eos_ids),
            )
        if accepted is None:
            engine.router.close(request_id)
            engine.sampling.remove(request_id)
            raise GenerationFailed("The generation engine is stopping; try again.")
        return engine, stream

    def close(self) -> None:
        """Stops the engine; the next request starts a new one."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            # Joined (an idle loop wakes every 0.1 s): at interpreter exit a loop still
            # inside torch when the daemon thread is torn down aborts the process.
            engine.manager.stop(block=True, timeout=STOP_TIMEOUT)

    @staticmethod
    def _stop_engine(batcher_ref: weakref.ref[ContinuousBatcher]) -> None:
        batcher = batcher_ref()
        if batcher is not None:
            batcher.close()


def _row_sampling(
    prompt: Sequence[int], params: GenerationParams, device: torch.device
) -> _RowSampling:
    return _RowSampling(
        generator=torch.Generator(device=device).manual_seed(params.seed),
        processors=sampling_processors(params),
        prompt_ids=torch.tensor([list(prompt)], device=device),
    )


class _Manager(ContinuousBatchingManager):
    def start(self) -> None:
        """As the manager's own `start`, on a daemon thread: an idle generation loop must
        not keep a worker from exiting (the manager's thread is not a daemon)."""
        self.background_thread_status.clear()
        self._generation_thread = threading.Thread(
            target=self._run_generation_loop,
            kwargs={"use_inference_mode": True},
            name="continuous-batching",
            daemon=True,
        )
        self._generation_thread.start()


def _start_engine(loaded: LoadedModel, eos_ids: frozenset[int], max_batch: int) -> _Engine:
    sampling = _SeededSampling()
    config = GenerationConfig(do_sample=False, eos_token_id=sorted(eos_ids))
    manager = _Manager(loaded.model, config, kv_cache_config(loaded.device, max_batch))
    # Both are handed to the loop when it starts, so they are swapped in before `start`.
    manager.logit_processor = _SamplingList(sampling)
    router = manager.output_router = _StreamRouter()
    manager.start()
    return _Engine(manager, router, sampling)


# Keyed weakly on the loaded model: an entry goes when its model is freed.
_batchers: weakref.WeakKeyDictionary[LoadedModel, ContinuousBatcher] = weakref.WeakKeyDictionary()
_batchers_lock = threading.Lock()


def continuous_batcher_for(
    loaded: LoadedModel, eos_ids: frozenset[int], max_batch: int
) -> ContinuousBatcher:
    """One continuous batcher per loaded model in this process."""
    with _batchers_lock:
        batcher = _batchers.get(loaded)
        if batcher is None:
            batcher = _batchers[loaded] = ContinuousBatcher(loaded, eos_ids, max_batch)
        return batcher


class ContinuousBatchedBackend(TransformersBackend):
    """`TransformersBackend` whose tokens come from the model's running batch."""

    def __init__(self, spec: ModelSpec, loaded: LoadedModel, max_batch: int):
        super().__init__(spec, loaded)
        # The batcher holds its model weakly; this backend's streams keep it alive.
        self.loaded = loaded
        self.batcher = continuous_batcher_for(loaded, self.eos_ids, max_batch)

    def deltas(self, prompt: Sequence[int], params: GenerationParams) -> Iterator[str]:
        return self.batcher.deltas(prompt, params)
