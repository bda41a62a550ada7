"""What the runtime needs to know about a model, without Django or torch.

A catalog listing becomes a `ModelSpec` (see `ModelListing.runtime_spec`); runners and the
loader only ever see the spec, so they can run in a worker, a benchmark or a test alike.

Source strings name where the weights are:
- `hf:org/name@rev` - a Hugging Face repository at a revision (the revision is optional);
- `path:/abs/folder` - a local model folder, or a `.gguf` file;
- `pkg:package/relative/path` - a folder or `.gguf` file shipped inside an installed package;
- `builtin:echo` - a model implemented in code, with no weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any


class SourceKind(StrEnum):
    HF = "hf"
    PATH = "path"
    PKG = "pkg"
    BUILTIN = "builtin"


BUILTIN_MODELS = frozenset({"echo"})
HF_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
REVISION_RE = re.compile(r"^[\w./-]{1,100}$")
PACKAGE_RE = re.compile(r"^[A-Za-z_]\w*$")


class SourceError(ValueError):
    """A source string that cannot name a model; the message is safe to show to its author."""


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    location: str
    revision: str = ""

    @property
    def is_gguf(self) -> bool:
        return self.location.lower().endswith(".gguf")

    @property
    def is_builtin(self) -> bool:
        return self.kind == SourceKind.BUILTIN

    def __str__(self) -> str:
        suffix = f"@{self.revision}" if self.revision else ""
        return f"{self.kind}:{self.location}{suffix}"


def parse_source(raw: str) -> Source:
    kind_text, sep, rest = raw.strip().partition(":")
    if not sep or not rest:
        raise SourceError(
            "A source looks like hf:org/name@rev, path:/folder, pkg:... or builtin:echo."
        )
    try:
        kind = SourceKind(kind_text)
    except ValueError:
        raise SourceError(f"Unknown source kind {kind_text!r}.") from None
    return _PARSERS[kind](rest)


def _parse_hf(rest: str) -> Source:
    repo, _, revision = rest.partition("@")
    if not HF_REPO_RE.match(repo):
        raise SourceError(f"{repo!r} is not a Hugging Face model id (org/name).")
    if revision and not REVISION_RE.match(revision):
        raise SourceError(f"{revision!r} is not a valid revision.")
    return Source(SourceKind.HF, repo, revision)


def _parse_path(rest: str) -> Source:
    if not PurePosixPath(rest).is_absolute():
        raise SourceError("A path: source must be an absolute path.")
    return Source(SourceKind.PATH, rest)


def _parse_pkg(rest: str) -> Source:
    package, _, relative = rest.partition("/")
    if not PACKAGE_RE.match(package):
        raise SourceError(f"{package!r} is not a Python package name.")
    # The path must stay inside the package folder.
    if relative.startswith("/") or ".." in PurePosixPath(relative).parts:
        raise SourceError("A pkg: source must be a path inside the package.")
    return Source(SourceKind.PKG, rest)


def _parse_builtin(rest: str) -> Source:
    if rest not in BUILTIN_MODELS:
        raise SourceError(f"Unknown builtin model {rest!r}; known: {', '.join(BUILTIN_MODELS)}.")
    return Source(SourceKind.BUILTIN, rest)


_PARSERS = {
    SourceKind.HF: _parse_hf,
    SourceKind.PATH: _parse_path,
    SourceKind.PKG: _parse_pkg,
    SourceKind.BUILTIN: _parse_builtin,
}


@dataclass(frozen=True)
class ModelSpec:
    """One model as the runtime sees it.

    `default_params` fill in generation parameters the caller left out; `max_params` are
    the caps validation enforces (e.g. `max_new_tokens`); `options` are runner-specific
    (the echo model's token rate, the classifier's label descriptions).
    """

    source: str
    task: str
    revision: str = ""
    dtype: str = "auto"
    max_context: int | None = None
    default_params: Mapping[str, Any] = field(default_factory=dict)
    max_params: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def parsed_source(self) -> Source:
        return parse_source(self.source)
