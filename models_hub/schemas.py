"""Default input schemas by task (API.md, "Model inputs"); a listing may extend its own.

The schema both validates input (`models_hub.validation`) and draws the playground form,
so every property carries a title and a description.
"""

from __future__ import annotations

from typing import Any

from models_hub.models import Task

MAX_STOP_STRINGS = 4
MAX_EMBEDDING_BATCH = 128
MAX_LABELS = 20
DEFAULT_MAX_NEW_TOKENS_CAP = 1024
MAX_SEED = 2**63 - 1


def text_generation_schema(max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS_CAP) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "prompt": {
                "type": "string",
                "title": "Prompt",
                "description": "Text to respond to. Give either prompt or messages.",
                "minLength": 1,
            },
            "messages": {
                "type": "array",
                "title": "Messages",
                "description": "A chat, oldest first. Give either prompt or messages.",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "role": {"type": "string", "enum": ["system", "user", "assistant"]},
                        "content": {"type": "string"},
                    },
                    "required": ["role", "content"],
                    "additionalProperties": False,
                },
            },
            "max_new_tokens": {
                "type": "integer",
                "title": "Max new tokens",
                "description": "Most tokens to generate.",
                "minimum": 1,
                "maximum": max_new_tokens,
            },
            "temperature": {
                "type": "number",
                "title": "Temperature",
                "description": "0 always picks the likeliest token; higher is more varied.",
                "minimum": 0,
                "maximum": 2,
            },
            "top_p": {
                "type": "number",
                "title": "Top p",
                "description": "Sample only from the likeliest tokens covering this probability.",
                "exclusiveMinimum": 0,
                "maximum": 1,
            },
            "stop": {
                "type": "array",
                "title": "Stop sequences",
                "description": "Generation stops before any of these strings.",
                "items": {"type": "string", "minLength": 1},
                "maxItems": MAX_STOP_STRINGS,
            },
            "seed": {
                "type": "integer",
                "title": "Seed",
                "description": "The same seed and input give the same output.",
                "minimum": 0,
                "maximum": MAX_SEED,
            },
        },
        "additionalProperties": False,
    }


def embeddings_schema() -> dict[str, Any]:
    text = {"type": "string", "minLength": 1}
    return {
        "type": "object",
        "properties": {
            "input": {
                "title": "Input",
                "description": "A text, or a list of texts to embed together.",
                "anyOf": [
                    text,
                    {
                        "type": "array",
                        "items": text,
                        "minItems": 1,
                        "maxItems": MAX_EMBEDDING_BATCH,
                    },
                ],
            },
        },
        "required": ["input"],
        "additionalProperties": False,
    }


def text_classification_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "text": {
                "type": "string",
                "title": "Text",
                "description": "The text to classify.",
                "minLength": 1,
            },
            "labels": {
                "type": "array",
                "title": "Labels",
                "description": "Candidate labels; the model's defaults when omitted.",
                "items": {"type": "string", "minLength": 1, "maxLength": 100},
                "minItems": 1,
                "maxItems": MAX_LABELS,
                "uniqueItems": True,
            },
        },
        "required": ["text"],
        "additionalProperties": False,
    }


def image_property() -> dict[str, Any]:
    """An image (API.md "Model inputs"): a data: URI or an uploaded file's `file:<id>`;
    inference.images validates it, and refuses any other URL without fetching it."""
    return {
        "type": "string",
        "title": "Image",
        "description": "A PNG, JPEG or WebP image (at most 10 MiB): a "
        "data:image/...;base64 URI, or file:<id> of a file uploaded to /api/v1/files.",
        "minLength": 1,
        "contentMediaType": "image/*",
    }


def ocr_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"image": image_property()},
        "required": ["image"],
        "additionalProperties": False,
    }


def object_detection_schema(min_score: float = 0.5) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "image": image_property(),
            "min_score": {
                "type": "number",
                "title": "Minimum score",
                "description": f"Only objects found with at least this score ({min_score} "
                "when omitted).",
                "minimum": 0,
                "maximum": 1,
            },
        },
        "required": ["image"],
        "additionalProperties": False,
    }


def default_schema(task: str) -> dict[str, Any]:
    return {
        Task.TEXT_GENERATION: text_generation_schema,
        Task.EMBEDDINGS: embeddings_schema,
        Task.TEXT_CLASSIFICATION: text_classification_schema,
        Task.OCR: ocr_schema,
        Task.OBJECT_DETECTION: object_detection_schema,
    }[Task(task)]()
