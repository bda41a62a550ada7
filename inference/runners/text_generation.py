"""The text-generation task: picks a backend for the model and streams its output.

The echo model answers from `EchoBackend`; a transformers model from
`TransformersBackend`, or from its process-wide batch when the worker runs several
predictions at once (`GENERATION_MAX_BATCH` > 1): continuous batching by default,
`GENERATION_BATCHING=static` for the older static batcher.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from django.conf import settings

from inference.input_checks import check_prompt_fits
from inference.loading import Arch, get_model
from inference.runners.base import CancelCheck, Event, never_cancel
from inference.runners.batching import BatchedTransformersBackend
from inference.runners.continuous_batching import ContinuousBatchedBackend
from inference.runners.echo import EchoBackend
from inference.runners.generation import GenerationBackend, resolve_params, stream_generation
from inference.runners.transformers_backend import TransformersBackend
from inference.spec import ModelSpec


class TextGenerationRunner:
    task = "text-generation"

    def backend(self, spec: ModelSpec, data: dict[str, Any]) -> GenerationBackend:
        if spec.parsed_source.is_builtin:
            return EchoBackend(spec, data)
        loaded = get_model(spec, Arch.CAUSAL_LM)
        if settings.GENERATION_MAX_BATCH > 1 and settings.GENERATION_BATCHING == "continuous":
            return ContinuousBatchedBackend(spec, loaded, settings.GENERATION_MAX_BATCH)
        if settings.GENERATION_MAX_BATCH > 1:
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
