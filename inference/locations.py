"""Where a source's files are on this machine, without torch: the worker's loader and the
web process's token counter (which must not import torch) both resolve sources here.

A GGUF file is served from the safetensors folder it is converted to under
`MODEL_CACHE_DIR` (default `<VAR_DIR>/model-cache`); only the loader converts, but anyone
can look for the folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from inference.spec import Source, SourceKind

# Bump when the conversion itself changes, so old folders are not reused.
GGUF_CONVERSION_VERSION = "1"


def cache_root() -> Path:
    configured = os.environ.get("MODEL_CACHE_DIR")
    if configured:
        root = Path(configured)
    else:
        from django.conf import settings

        root = Path(settings.VAR_DIR) / "model-cache"
    root.mkdir(parents=True, exist_ok=True)
    return root


def package_path(source: Source) -> Path:
    """The file or folder a `pkg:` source names, found without importing the package."""
    package, _, relative = source.location.partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Package {package!r} is not installed.")
    return Path(spec.submodule_search_locations[0]) / relative


def local_path(source: Source) -> Path:
    path = package_path(source) if source.kind == SourceKind.PKG else Path(source.location)
    if not path.exists():
        raise FileNotFoundError(f"{source} does not exist on this machine.")
    return path


def gguf_folder(gguf_path: Path) -> Path:
    """The folder a GGUF file is (or will be) converted to: named after the file's path,
    size and mtime, so a replaced file gets a new folder."""
    stat = gguf_path.stat()
    identity = f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{GGUF_CONVERSION_VERSION}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return cache_root() / f"{gguf_path.stem}-{digest}"
