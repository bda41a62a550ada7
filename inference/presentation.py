"""How the prediction pages show a prediction: the list's filters and input previews,
and the detail page's input and output laid out by what the customer sent and got.

The pages show what the API stored, unchanged: this module only picks which part of an
input is worth a preview and formats JSON for reading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.http import QueryDict
from django.urls import reverse

from inference.images import file_ref, image_fields
from inference.models import Prediction, Source, Status
from models_hub.models import ModelListing, Task

# Characters of an input shown in the predictions list.
PREVIEW_CHARS = 80
# Values of each vector the server shows (static/js/playground-results.js shows as many).
VECTOR_PREVIEW = 6
# Input fields shown as the input itself, not as parameters, by task.
CONTENT_FIELDS = {
    Task.TEXT_GENERATION: ("prompt", "messages"),
    Task.EMBEDDINGS: ("input",),
    Task.TEXT_CLASSIFICATION: ("text",),
    Task.OCR: ("image",),
    Task.OBJECT_DETECTION: ("image",),
}
# Tasks whose output is boxes on the input image (static/js/playground-results.js draws them).
VISION_TASKS = (Task.OCR, Task.OBJECT_DETECTION)


@dataclass(frozen=True)
class ListFilters:
    """The predictions list's filters; a value that is not one of the choices is ignored
    (the form then shows "any"), as a stale bookmark should still open the page."""

    model: str = ""
    status: str = ""
    source: str = ""

    def apply(self, predictions: QuerySet[Prediction]) -> QuerySet[Prediction]:
        if self.model:
            predictions = predictions.filter(model__slug=self.model)
        if self.status:
            predictions = predictions.filter(status=self.status)
        if self.source:
            predictions = predictions.filter(source=self.source)
        return predictions


def models_used(predictions: QuerySet[Prediction]) -> QuerySet[ModelListing]:
    """The listings the org's predictions ran, for the model filter's choices."""
    ids = predictions.order_by().values("model_id").distinct()
    return ModelListing.objects.filter(pk__in=ids).order_by("name")


def parse_filters(query: QueryDict, model_slugs: set[str]) -> ListFilters:
    def pick(name: str, allowed: set[str] | list[str]) -> str:
        value = query.get(name, "")
        return value if value in allowed else ""

    return ListFilters(
        model=pick("model", model_slugs),
        status=pick("status", Status.values),
        source=pick("source", Source.values),
    )


def shorten(text: str, limit: int = PREVIEW_CHARS) -> str:
    text = " ".join(text.split())  # a preview is one line
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _texts_preview(value: Any) -> str:
    if isinstance(value, str):
        return shorten(value)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return shorten(value[0])
    if isinstance(value, list):
        return f"{len(value)} texts"
    return ""


def _last_user_message(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    said = [m for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str)]
    users = [m for m in said if m.get("role") == "user"]
    return (users or said or [{"content": ""}])[-1]["content"]


def input_preview(prediction: Prediction) -> str:
    """About a line of what was sent: the prompt, the last thing the user said in a chat,
    the text classified, the text(s) embedded, or that an image was sent."""
    if prediction.data_removed_at is not None:
        return ""
    data = prediction.input if isinstance(prediction.input, dict) else {}
    if data.get("messages"):
        return shorten(_last_user_message(data["messages"]))
    for field in ("prompt", "text"):
        if isinstance(data.get(field), str):
            return shorten(data[field])
    if isinstance(data.get("image"), str):
        return "An image"  # its file id or base64 says nothing to a reader
    if "input" in data:
        return _texts_preview(data["input"])
    return shorten(json.dumps(data, ensure_ascii=False)) if data else ""


def duration(prediction: Prediction) -> float | None:
    """Seconds from admission to the end, queue included: what the caller waited."""
    if prediction.completed_at is None:
        return None
    return (prediction.completed_at - prediction.created_at).total_seconds()


@dataclass(frozen=True)
class ListRow:
    prediction: Prediction
    preview: str
    duration: float | None


def list_rows(predictions: list[Prediction]) -> list[ListRow]:
    return [ListRow(p, input_preview(p), duration(p)) for p in predictions]


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class InputView:
    """The input split into what was said (messages, a prompt, texts, an image) and
    parameters. `image` is a URL the page can show the input image from, or None."""

    messages: list[dict[str, str]]
    prompt: str | None
    texts: list[str]
    parameters: dict[str, str]
    image: str | None = None


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return []
    return [
        {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
        for m in value
        if isinstance(m, dict)
    ]


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(text) for text in value] if isinstance(value, list) else []


def input_view(prediction: Prediction) -> InputView:
    data = prediction.input if isinstance(prediction.input, dict) else {}
    fields = CONTENT_FIELDS.get(prediction.model.task, ())
    said = {key: data.get(key) for key in fields}
    messages = _messages(said.get("messages"))
    prompt = next(
        (v for k, v in said.items() if k in ("prompt", "text") and isinstance(v, str)), None
    )
    parameters = {
        key: value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        for key, value in data.items()
        if key not in fields
    }
    return InputView(
        messages,
        None if messages else prompt,
        _texts(said.get("input")),
        parameters,
        image_url(prediction.model.task, data),
    )


def image_url(task: str, data: dict[str, Any]) -> str | None:
    """Where the browser reads the input's image: the org's file (stored inputs hold
    `file:<id>`: admission stores inline images as files), or the data: URI itself."""
    for name in image_fields(task):
        value = data.get(name)
        if not isinstance(value, str):
            continue
        file_id = file_ref(value)
        if file_id is not None:
            return reverse("file_content", args=[file_id])
        if value.startswith("data:image/"):
            return value
    return None


@dataclass(frozen=True)
class OutputView:
    """`kind` says how the page draws the output: "text" (Markdown, with the raw text
    behind a toggle), "embeddings" (a summary), "classification" (bars), "vision" (boxes
    on the input image, `labels` listing what each box holds) or "json"."""

    kind: str
    raw: str
    vectors: int = 0
    dimension: int = 0
    previews: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


def _is_vectors(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, list) for v in value)


def _is_labels(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, dict) and "label" in v and isinstance(v.get("score"), int | float)
        for v in value
    )


def _is_boxes(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, dict)
        and isinstance(v.get("box"), list)
        and isinstance(v.get("score"), int | float)
        for v in value
    )


def output_view(prediction: Prediction) -> OutputView:
    value, task = prediction.output, prediction.model.task
    if isinstance(value, str):
        return OutputView("text", value)
    if task == Task.EMBEDDINGS and _is_vectors(value) and value:
        previews = tuple(
            "[" + ", ".join(f"{x:.4f}" for x in vector[:VECTOR_PREVIEW]) + ", …]"
            for vector in value
        )
        # No raw JSON here: thousands of floats are for Copy / Download, not for reading.
        return OutputView("embeddings", "", len(value), len(value[0]), previews)
    if task == Task.TEXT_CLASSIFICATION and _is_labels(value):
        labels = tuple((str(v["label"]), f"{v['score'] * 100:.1f}%") for v in value)
        return OutputView("classification", pretty_json(value), labels=labels)
    if task in VISION_TASKS and _is_boxes(value):
        # OCR lines carry their text, detections their label.
        found = tuple(
            (str(v.get("text", v.get("label", ""))), f"{v['score'] * 100:.1f}%") for v in value
        )
        return OutputView("vision", pretty_json(value), labels=found)
    return OutputView("json", pretty_json(value))
