"""Copy-paste code for a model page, pointed at this portal's real base URL.

Each snippet runs the listing's example input, or the input the playground just ran (its
API tab); the token is read from the MODEL_PORTAL_TOKEN environment variable so that no
secret ends up in shell history or in a file.

Vision models (OCR, object detection) take an image: their snippets upload `image.png`
to /api/v1/files first and send the prediction `"image": "file:<id>"`, whatever image the
input held (a data: URI is no code to read, and a stored file expires).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db.models import Case, IntegerField, Value, When

from inference.images import image_fields
from models_hub.models import ModelListing, Task
from portal.models import ApiToken, TokenScope

# The diagnostic model: a first call to it proves the token works and nothing else.
ECHO_SOURCE = "builtin:echo"
# Input fields of text generation that the OpenAI API names the same way.
OPENAI_SAME_NAMES = ("temperature", "top_p", "stop", "seed")
# The file a vision snippet uploads, and what stands for the uploaded file's id in the
# input until each language writes its own variable there.
IMAGE_PATH = "image.png"
FILE_ID_MARK = "file:__FILE_ID__"


@dataclass(frozen=True)
class Snippet:
    key: str
    label: str
    language: str
    code: str


def _json(value: Any, indent: int | None = 2) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False)


def _python(value: Any, level: int = 0) -> str:
    """A Python literal laid out like indented JSON, starting on a line at `level` indents."""
    inner, outer = "    " * (level + 1), "    " * level
    if isinstance(value, dict) and value:
        items = [f"{inner}{_json(k)}: {_python(v, level + 1)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + f"\n{outer}}}"
    if isinstance(value, list) and value:
        items = [f"{inner}{_python(v, level + 1)}," for v in value]
        return "[\n" + "\n".join(items) + f"\n{outer}]"
    if isinstance(value, bool) or value is None:
        return repr(value)
    return _json(value)


def _js(value: Any, margin: int) -> str:
    return _json(value).replace("\n", "\n" + " " * margin)


def with_uploaded_image(listing: ModelListing, model_input: dict[str, Any]) -> dict[str, Any]:
    """The input with each image field set to the uploaded file (the mark), first."""
    marks = {name: FILE_ID_MARK for name in image_fields(listing.task)}
    return {**marks, **{k: v for k, v in model_input.items() if k not in marks}}


def curl_snippet(
    listing: ModelListing, base_url: str, model_input: dict[str, Any] | None = None
) -> Snippet:
    model_input = listing.example_input if model_input is None else model_input
    if image_fields(listing.task):
        return curl_image_snippet(listing, base_url, model_input)
    # Laid out like the other snippets: a chat's history reads as a list, not one line.
    body = _json({"model": listing.slug, "input": model_input})
    return Snippet("curl", "curl", "shell", _curl_predict(base_url, _shell_quoted(body)))


def _shell_quoted(text: str) -> str:
    """`text` for inside single quotes in a shell."""
    return text.replace("'", "'\\''")


def _curl_predict(base_url: str, quoted_body: str) -> str:
    return (
        f"curl -s -X POST {base_url}/api/v1/predictions \\\n"
        '  -H "Authorization: Bearer $MODEL_PORTAL_TOKEN" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        '  -H "Prefer: wait" \\\n'
        f"  -d '{quoted_body}'"
    )


def curl_image_snippet(
    listing: ModelListing, base_url: str, model_input: dict[str, Any]
) -> Snippet:
    body = _json({"model": listing.slug, "input": with_uploaded_image(listing, model_input)})
    # The JSON is single-quoted for the shell: the id is spliced in between two quotes.
    quoted = _shell_quoted(body).replace(FILE_ID_MARK, "file:'\"$FILE_ID\"'")
    code = (
        f"# 1. Upload the image (PNG, JPEG or WebP, at most 10 MiB); jq reads its id.\n"
        f"FILE_ID=$(curl -s -X POST {base_url}/api/v1/files \\\n"
        '  -H "Authorization: Bearer $MODEL_PORTAL_TOKEN" \\\n'
        f"  -F file=@{IMAGE_PATH} | jq -r .id)\n\n"
        "# 2. Run the model on it.\n" + _curl_predict(base_url, quoted)
    )
    return Snippet("curl", "curl", "shell", code)


def requests_image_snippet(
    listing: ModelListing, base_url: str, model_input: dict[str, Any]
) -> Snippet:
    model_input = with_uploaded_image(listing, model_input)
    literal = _python(model_input, 2).replace(_json(FILE_ID_MARK), 'f"file:{file_id}"')
    code = f"""import os

import requests

headers = {{"Authorization": f"Bearer {{os.environ['MODEL_PORTAL_TOKEN']}}"}}

# 1. Upload the image (PNG, JPEG or WebP, at most 10 MiB).
with open("{IMAGE_PATH}", "rb") as image:
    uploaded = requests.post(
        "{base_url}/api/v1/files", headers=headers, files={{"file": image}}, timeout=60
    )
uploaded.raise_for_status()
file_id = uploaded.json()["id"]

# 2. Run the model on it.
response = requests.post(
    "{base_url}/api/v1/predictions",
    headers={{**headers, "Prefer": "wait"}},
    json={{
        "model": {_json(listing.slug)},
        "input": {literal},
    }},
    timeout=90,
)
response.raise_for_status()
prediction = response.json()
print(prediction["status"], prediction["output"])"""
    return Snippet("python", "Python (requests)", "python", code)


def fetch_image_snippet(
    listing: ModelListing, base_url: str, model_input: dict[str, Any]
) -> Snippet:
    model_input = with_uploaded_image(listing, model_input)
    literal = _js(model_input, 4).replace(_json(FILE_ID_MARK), "`file:${uploaded.id}`")
    code = f"""// Node 18+ (fetch, FormData and Blob built in)
import {{ readFile }} from "node:fs/promises";

const headers = {{ Authorization: `Bearer ${{process.env.MODEL_PORTAL_TOKEN}}` }};

// 1. Upload the image (PNG, JPEG or WebP, at most 10 MiB).
const form = new FormData();
form.append("file", new Blob([await readFile("{IMAGE_PATH}")]), "{IMAGE_PATH}");
const uploaded = await (
  await fetch("{base_url}/api/v1/files", {{ method: "POST", headers, body: form }})
).json();

// 2. Run the model on it.
const response = await fetch("{base_url}/api/v1/predictions", {{
  method: "POST",
  headers: {{ ...headers, "Content-Type": "application/json", Prefer: "wait" }},
  body: JSON.stringify({{
    model: {_json(listing.slug)},
    input: {literal},
  }}),
}});
const prediction = await response.json();
console.log(prediction.status, JSON.stringify(prediction.output, null, 2));"""
    return Snippet("javascript", "JavaScript (fetch)", "javascript", code)


def requests_snippet(listing: ModelListing, base_url: str, model_input: dict[str, Any]) -> Snippet:
    code = f"""import os

import requests

response = requests.post(
    "{base_url}/api/v1/predictions",
    headers={{
        "Authorization": f"Bearer {{os.environ['MODEL_PORTAL_TOKEN']}}",
        "Prefer": "wait",
    }},
    json={{
        "model": {_json(listing.slug)},
        "input": {_python(model_input, 2)},
    }},
    timeout=90,
)
response.raise_for_status()
prediction = response.json()
print(prediction["status"], prediction["output"])"""
    return Snippet("python", "Python (requests)", "python", code)


def _chat_arguments(model_input: dict[str, Any]) -> list[str]:
    """`name=value` lines for chat.completions.create after `messages`: the generation
    parameters the OpenAI API has, under its names."""
    lines = []
    if "max_new_tokens" in model_input:
        lines.append(f"max_tokens={_python(model_input['max_new_tokens'], 1)},")
    for name in OPENAI_SAME_NAMES:
        if name in model_input:
            lines.append(f"{name}={_python(model_input[name], 1)},")
    return lines


def openai_snippet(
    listing: ModelListing, base_url: str, model_input: dict[str, Any]
) -> Snippet | None:
    """The OpenAI SDK covers chat and embeddings; classification has no OpenAI endpoint."""
    header = f"""import os

from openai import OpenAI

client = OpenAI(base_url="{base_url}/v1", api_key=os.environ["MODEL_PORTAL_TOKEN"])
"""
    if listing.task == Task.TEXT_GENERATION:
        messages = model_input.get("messages") or [
            {"role": "user", "content": model_input.get("prompt", "Hello!")}
        ]
        arguments = "".join(f"\n    {line}" for line in _chat_arguments(model_input))
        # Fields of the model's own (echo's tokens_per_second) have no OpenAI name.
        others = sorted(
            set(model_input) - {"prompt", "messages", "max_new_tokens", *OPENAI_SAME_NAMES}
        )
        note = "".join(f"# {name}: the predictions API only (curl, Python)\n" for name in others)
        body = f"""{note}stream = client.chat.completions.create(
    model={_json(listing.slug)},
    messages={_python(messages, 1)},{arguments}
    stream=True,
)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
print()"""
    elif listing.task == Task.EMBEDDINGS:
        body = f"""result = client.embeddings.create(
    model={_json(listing.slug)},
    input={_python(model_input.get("input", "Hello!"), 1)},
)
print(len(result.data), "vectors of", len(result.data[0].embedding), "dimensions")"""
    else:
        return None
    return Snippet("openai", "OpenAI SDK", "python", header + "\n" + body)


def websocket_snippet(listing: ModelListing, base_url: str, model_input: dict[str, Any]) -> Snippet:
    code = f"""// Node 18+: npm install ws
import WebSocket from "ws";

const headers = {{ Authorization: `Bearer ${{process.env.MODEL_PORTAL_TOKEN}}` }};
const response = await fetch("{base_url}/api/v1/predictions", {{
  method: "POST",
  headers: {{ ...headers, "Content-Type": "application/json" }},
  body: JSON.stringify({{
    model: {_json(listing.slug)},
    input: {_js(model_input, 4)},
    stream: true,
  }}),
}});
const prediction = await response.json();

const socket = new WebSocket(prediction.urls.websocket, {{ headers }});
socket.on("message", (raw) => {{
  const event = JSON.parse(raw);
  if (event.type === "output") process.stdout.write(String(event.data));
  if (event.type === "done") console.log("\\n", event.data.status, event.data.metrics);
}});"""
    return Snippet("websocket", "JavaScript (WebSocket)", "javascript", code)


def snippets_for(
    listing: ModelListing, base_url: str, model_input: dict[str, Any] | None = None
) -> list[Snippet]:
    """curl, Python, the OpenAI SDK (where it applies) and JavaScript, running
    `model_input` (default: the listing's example). Vision models upload an image first;
    the OpenAI API has no such call, so they have no OpenAI SDK snippet."""
    base_url = base_url.rstrip("/")
    model_input = listing.example_input if model_input is None else model_input
    if image_fields(listing.task):
        return [
            curl_image_snippet(listing, base_url, model_input),
            requests_image_snippet(listing, base_url, model_input),
            fetch_image_snippet(listing, base_url, model_input),
        ]
    candidates = [
        curl_snippet(listing, base_url, model_input),
        requests_snippet(listing, base_url, model_input),
        openai_snippet(listing, base_url, model_input),
        websocket_snippet(listing, base_url, model_input),
    ]
    return [snippet for snippet in candidates if snippet is not None]


def first_call_listing(token: ApiToken) -> ModelListing | None:
    """The model a new token's first call runs: one the token may call, a real one before
    `echo`; None when the token cannot run predictions at all."""
    if TokenScope.PREDICT not in token.scopes:
        return None
    listings = ModelListing.objects.catalog(token.org)
    if token.allowed_models:
        listings = listings.filter(slug__in=token.allowed_models)
    echo_last = Case(
        When(source=ECHO_SOURCE, then=Value(1)), default=Value(0), output_field=IntegerField()
    )
    return listings.order_by(echo_last, "slug").first()
