"""Token counts for input validation in the web process, without torch or transformers.

Importing transformers (and torch with it) costs a web process hundreds of MiB and
seconds at start, only to count tokens. A model's fast tokenizer is a `tokenizer.json`
that the `tokenizers` package (Rust, no torch) reads directly; chat templates are Jinja,
rendered here the way transformers 5's `apply_chat_template` renders them. The worker
keeps counting with transformers (`encode_prompt`), and tests/inference/test_tokenizing.py
checks that both agree for every demo model.

`token_counter` returns None for a source this path cannot serve: a GGUF file that the
worker has not converted yet (only the worker converts, with torch), or a folder without
`tokenizer.json`. The web then admits the input without the token check; the worker
makes the same check on its own count before generating (see
`inference.input_checks`), so such an input is refused with the same message, only later.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from inference.locations import gguf_folder, local_path
from inference.spec import ModelSpec, Source, SourceKind

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
# Older tokenizers name their special tokens here; transformers reads it only when the
# config has no `added_tokens_decoder`.
LEGACY_SPECIAL_TOKENS_FILE = "special_tokens_map.json"
# A template in its own file takes priority over one in the config, as in transformers.
CHAT_TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_FILES = (TOKENIZER_FILE, CONFIG_FILE, LEGACY_SPECIAL_TOKENS_FILE, CHAT_TEMPLATE_FILE)
# The special tokens every chat template sees as variables (transformers'
# `special_tokens_map`); a config's other `*_token` strings are passed too.
NAMED_SPECIAL_TOKENS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


@dataclass(frozen=True)
class TokenCounter:
    """A model's tokenizer as far as counting needs it.

    `model_max_length` is the config's value as is: `context_limit` decides whether it is
    a real context or the "unknown" sentinel, for this and for transformers' tokenizers.
    """

    tokenizer: Tokenizer
    chat_template: jinja2.Template | None
    special_tokens: Mapping[str, str]
    model_max_length: int | None

    def count(self, text: str, add_special_tokens: bool = True) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def render_chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The conversation as the model reads it, ending where the assistant speaks."""
        assert self.chat_template is not None
        return self.chat_template.render(
            messages=[dict(message) for message in messages],
            tools=None,
            documents=None,
            add_generation_prompt=True,
            **self.special_tokens,
        )


# --- Finding and reading the files -------------------------------------------------------


def tokenizer_folder(source: Source) -> Path | None:
    """The folder with the source's tokenizer files, or None when there is none yet.

    Looked up on every call (a stat or two), so a GGUF file the worker converts later is
    counted from then on; a Hub repository is looked up once.
    """
    if source.kind == SourceKind.HF:
        return hub_snapshot(source.location, source.revision)
    path = local_path(source)
    if source.is_gguf:
        path = gguf_folder(path)
    return path if (path / TOKENIZER_FILE).is_file() else None


@lru_cache(maxsize=32)
def hub_snapshot(repo: str, revision: str) -> Path | None:
    """The tokenizer files of a Hub repository, from the local cache or downloaded (as
    `from_pretrained` would); only the files counting needs."""
    # Imported here: only Hub sources need it, and it is not free to import.
    from huggingface_hub import snapshot_download

    folder = Path(
        snapshot_download(repo, revision=revision or None, allow_patterns=TOKENIZER_FILES)
    )
    return folder if (folder / TOKENIZER_FILE).is_file() else None


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def token_text(value: Any) -> str | None:
    """A special token as configs write it: a string, or an AddedToken's dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def special_tokens(config: Mapping[str, Any], legacy: Mapping[str, Any]) -> dict[str, str]:
    entries = dict(config)
    if "added_tokens_decoder" not in config:
        entries.update(legacy)
    named = {name: token_text(entries.get(name)) for name in NAMED_SPECIAL_TOKENS}
    others = {
        name: token_text(value)
        for name, value in entries.items()
        if name.endswith("_token") and name not in named
    }
    return {name: text for name, text in {**named, **others}.items() if text is not None}


def chat_template_text(folder: Path, config: Mapping[str, Any]) -> str | None:
    """The model's (default) chat template; a config may list several by name."""
    template_file = folder / CHAT_TEMPLATE_FILE
    if template_file.is_file():
        return template_file.read_text(encoding="utf-8")
    configured = config.get("chat_template")
    if isinstance(configured, list):
        named = {entry["name"]: entry["template"] for entry in configured}
        return named.get("default")
    return configured if isinstance(configured, str) else None


# --- Rendering chat templates --------------------------------------------------------------


def raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes HTML characters, which would change the prompt.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


@lru_cache(maxsize=1)
def template_environment() -> ImmutableSandboxedEnvironment:
    """Chat templates are code from a model's publisher: they run sandboxed, with the
    options and helpers transformers gives them (its `{% generation %}` tag only marks
    assistant spans for training masks, and no template we render needs it)."""
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    return environment


# --- Loading, once per process -------------------------------------------------------------


@lru_cache(maxsize=32)
def load_counter(folder: Path) -> TokenCounter:
    tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    # tokenizer.json may carry the truncation and padding a model was trained with;
    # transformers turns both off for a plain call, and so must a count.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    config = read_json(folder / CONFIG_FILE)
    template = chat_template_text(folder, config)
    max_length = config.get("model_max_length")
    return TokenCounter(
        tokenizer=tokenizer,
        chat_template=template_environment().from_string(template) if template else None,
        special_tokens=special_tokens(config, read_json(folder / LEGACY_SPECIAL_TOKENS_FILE)),
        model_max_length=max_length if isinstance(max_length, int) else None,
    )


def token_counter(spec: ModelSpec) -> TokenCounter | None:
    """The model's counter, loaded once per folder, or None when this process cannot count
    for it (see above). Raises OSError when the files cannot be read."""
    folder = tokenizer_folder(spec.parsed_source)
    return load_counter(folder) if folder is not None else None
