"""Zero-shot text classification over sentence embeddings.

The text and each label's description are embedded with the same model; labels are
ranked by cosine similarity, and the similarities (times `score_scale`) are turned into
scores that sum to 1. A listing's options give descriptions for its default labels;
a label the caller brings is described by `label_template` ("This text is about {label}.").
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from inference.loading import Arch, LoadedModel, LoadKey, get_model
from inference.runners.base import CancelCheck, Event, Metrics, Result, never_cancel
from inference.runners.embeddings import check_token_counts, embed
from inference.spec import ModelSpec

DEFAULT_LABELS = ("positive", "negative", "neutral")
DEFAULT_TEMPLATE = "This text is about {label}."
DEFAULT_SCORE_SCALE = 20.0
LABEL_CACHE_SIZE = 256


def label_descriptions(spec: ModelSpec, labels: Sequence[str]) -> list[tuple[str, ...]]:
    """One or more descriptions per label; several are averaged into one vector."""
    known = spec.options.get("label_descriptions", {})
    template = spec.options.get("label_template", DEFAULT_TEMPLATE)
    described = []
    for label in labels:
        texts = known.get(label) or [template.format(label=label)]
        described.append(tuple([texts] if isinstance(texts, str) else texts))
    return described


class LabelVectors:
    """Label vectors by (model, descriptions): default labels are embedded once per process."""

    def __init__(self, size: int = LABEL_CACHE_SIZE):
        self.size = size
        self._vectors: OrderedDict[tuple[LoadKey, tuple[str, ...]], torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, loaded: LoadedModel, descriptions: tuple[str, ...], max_length: int | None
    ) -> torch.Tensor:
        key = (loaded.key, descriptions)
        with self._lock:
            if key in self._vectors:
                self._vectors.move_to_end(key)
                return self._vectors[key]
        vectors, _ = embed(loaded, descriptions, max_length)
        vector = F.normalize(vectors.mean(dim=0), dim=-1)
        with self._lock:
            self._vectors[key] = vector
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return vector


class ClassificationRunner:
    task = "text-classification"

    def __init__(self) -> None:
        self.label_vectors = LabelVectors()

    def run(
        self, spec: ModelSpec, data: dict[str, Any], should_cancel: CancelCheck = never_cancel
    ) -> Iterator[Event]:
        loaded = get_model(spec, Arch.ENCODER)
        check_token_counts(spec, loaded, [data["text"]], ["input.text"])
        started = time.perf_counter()  # once the model is in memory, as for generation
        labels = list(data.get("labels") or spec.options.get("default_labels", DEFAULT_LABELS))
        label_matrix = torch.stack(
            [
                self.label_vectors.get(loaded, descriptions, spec.max_context)
                for descriptions in label_descriptions(spec, labels)
            ]
        )
        text_vector, tokens = embed(loaded, [data["text"]], spec.max_context)
        similarity = label_matrix @ text_vector[0]
        scale = float(spec.options.get("score_scale", DEFAULT_SCORE_SCALE))
        scores = torch.softmax(similarity * scale, dim=0).tolist()
        ranked = sorted(zip(labels, scores, strict=True), key=lambda pair: pair[1], reverse=True)
        output = [{"label": label, "score": round(score, 6)} for label, score in ranked]
        yield Event.result(Result(output, Metrics(tokens, 0, time.perf_counter() - started)))
