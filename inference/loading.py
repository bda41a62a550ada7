"""Loading models into a worker process: device, dtype, one cache, GGUF conversion.

Each process keeps one `ModelCache` keyed by (source, revision, device, dtype, arch): a
model is loaded once and reused by every prediction the process runs. The cache has a
byte budget (`MODEL_CACHE_MAX_BYTES`) and evicts the least recently used models to stay
under it. Device comes from `MODEL_DEVICE` (`auto` picks CUDA when present).

GGUF files are dequantized once per machine into a safetensors folder under
`MODEL_CACHE_DIR` (default `<VAR_DIR>/model-cache`): the conversion takes many seconds,
loading the folder afterwards well under one.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from inference.locations import gguf_folder, local_path
from inference.spec import ModelSpec, SourceKind, parse_source
from portal import metrics

logger = logging.getLogger(__name__)

DEFAULT_CACHE_MAX_BYTES = 8 * 1024**3
MODELS_GAUGE_INTERVAL = 5
MODELS_GAUGE_TTL = 20
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BYTE_SUFFIXES = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class Arch(StrEnum):
    """Which head to load a checkpoint with: the same folder may serve both."""

    CAUSAL_LM = "causal-lm"
    ENCODER = "encoder"


@dataclass(frozen=True)
class LoadKey:
    source: str
    revision: str
    device: str
    dtype: str
    arch: Arch


@dataclass(eq=False)
class LoadedModel:
    key: LoadKey
    model: torch.nn.Module
    tokenizer: Any
    nbytes: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


# --- Device and dtype ------------------------------------------------------------------


def resolve_device(setting: str | None = None) -> torch.device:
    """`auto` (the default) is CUDA when available, else CPU; anything else is taken as is."""
    name = (setting or os.environ.get("MODEL_DEVICE") or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"MODEL_DEVICE={name} but CUDA is not available in this process.")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is bf16 (fp16 on GPUs without bf16) on CUDA and fp32 elsewhere."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(
            f"Unknown dtype {name!r}; use auto or one of {', '.join(DTYPES)}."
        ) from None


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


def parse_bytes(text: str) -> int:
    """`8589934592`, `8G`, `512M` or `512MiB`."""
    cleaned = text.strip().lower().removesuffix("ib").removesuffix("b")
    if cleaned and cleaned[-1] in BYTE_SUFFIXES:
        return int(float(cleaned[:-1]) * BYTE_SUFFIXES[cleaned[-1]])
    return int(cleaned)


# --- Where weights are -----------------------------------------------------------------


def pretrained_args(spec_source: str, revision: str) -> tuple[str, dict[str, Any]]:
    """What to pass to `from_pretrained` for a source: a folder or repo id, and kwargs."""
    source = parse_source(spec_source)
    if source.kind == SourceKind.BUILTIN:
        raise ValueError(f"{source} has no weights to load.")
    if source.kind == SourceKind.HF:
        return source.location, {"revision": revision or source.revision or None}
    path = local_path(source)
    if source.is_gguf:
        path = converted_gguf_dir(path)
    return str(path), {}


# --- GGUF conversion -------------------------------------------------------------------


def converted_gguf_dir(gguf_path: Path) -> Path:
    """The safetensors folder for a GGUF file, converting it on first use.

    A file lock makes concurrent processes wait for one conversion instead of each doing
    it; the temp-folder-and-rename makes a crash mid-way leave nothing half written.
    """
    target = gguf_folder(gguf_path)
    root = target.parent
    if target.is_dir():
        return target
    with FileLock(str(root / f".{target.name}.lock")):
        if target.is_dir():
            return target
        started = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
        try:
            _convert_gguf(gguf_path, staging)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("Converted %s in %.1fs", gguf_path.name, time.perf_counter() - started)
    return target


def _convert_gguf(gguf_path: Path, destination: Path) -> None:
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The weights are already dequantized; without this save_pretrained refuses (or
    # records a GGUF quantization that the safetensors folder does not have).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)


# --- Loading ---------------------------------------------------------------------------


def model_nbytes(model: torch.nn.Module) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def load_model(key: LoadKey) -> LoadedModel:
    """Reads weights from disk (or the Hugging Face cache) onto the key's device."""
    started = time.perf_counter()
    location, kwargs = pretrained_args(key.source, key.revision)
    device = torch.device(key.device)
    model_class = AutoModelForCausalLM if key.arch == Arch.CAUSAL_LM else AutoModel
    tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    model = model_class.from_pretrained(location, dtype=DTYPES[key.dtype], **kwargs)
    model.to(device).eval()
    elapsed = time.perf_counter() - started
    logger.info("Loaded %s (%s, %s) in %.2fs", key.source, key.device, key.dtype, elapsed)
    return LoadedModel(key, model, tokenizer, model_nbytes(model), device)


class ModelCache:
    """Loaded models of one process, least recently used first, within a byte budget.

    A model's size is known only once it is loaded, so room is made right after a load:
    for a moment the process holds the evicted models and the new one. A model bigger
    than the whole budget is still loaded (alone): refusing would make it unusable on this
    worker, which is a deployment decision, not the cache's.
    """

    def __init__(
        self, max_bytes: int | None, loader: Callable[[LoadKey], LoadedModel] = load_model
    ):
        self.max_bytes = max_bytes
        self.loader = loader
        self.loads = 0
        self._entries: OrderedDict[LoadKey, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[LoadKey, threading.Lock] = {}

    def __contains__(self, key: LoadKey) -> bool:
        return key in self._entries

    @property
    def total_bytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def keys(self) -> list[LoadKey]:
        """Least recently used first."""
        return list(self._entries)

    def get(self, key: LoadKey) -> LoadedModel:
        hit = self._touch(key)
        if hit is not None:
            return hit
        # One lock per key: two threads asking for the same model load it once, while a
        # load of another model is not held up.
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            hit = self._touch(key)
            if hit is not None:
                return hit
            loaded = self.loader(key)
            self.loads += 1
            with self._lock:
                self._make_room(loaded.nbytes)
                self._entries[key] = loaded
            return loaded

    def _touch(self, key: LoadKey) -> LoadedModel | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def _make_room(self, incoming: int) -> None:
        if self.max_bytes is None:
            return
        while self._entries and self.total_bytes + incoming > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: LoadKey) -> None:
        entry = self._entries.pop(key)
        logger.info("Evicted %s (%d MB)", key.source, entry.nbytes // 1024**2)
        if entry.device.type == "cuda":
            # A prediction still running on it keeps its reference; the memory is given
            # back once that finishes.
            del entry
            torch.cuda.empty_cache()


_process_cache: ModelCache | None = None
_process_cache_lock = threading.Lock()


def model_cache() -> ModelCache:
    """This process's cache, created on first use from `MODEL_CACHE_MAX_BYTES`."""
    global _process_cache
    with _process_cache_lock:
        if _process_cache is None:
            raw = os.environ.get("MODEL_CACHE_MAX_BYTES", "")
            max_bytes = parse_bytes(raw) if raw.strip() else DEFAULT_CACHE_MAX_BYTES
            _process_cache = ModelCache(max_bytes)
            _report_models_loaded(_process_cache)
        return _process_cache


def _report_models_loaded(cache: ModelCache) -> None:
    """Each process that loads models (a prefork child, a threads-pool worker) publishes
    how many it holds; the gauge expires when the process dies."""
    labels = {"worker": f"{socket.gethostname()}:{os.getpid()}"}

    def report() -> None:
        while True:
            metrics.set_gauge(
                "portal_worker_models_loaded", labels, len(cache.keys()), MODELS_GAUGE_TTL
            )
            time.sleep(MODELS_GAUGE_INTERVAL)

    threading.Thread(target=report, name="models-gauge", daemon=True).start()


def load_key(spec: ModelSpec, arch: Arch, device: torch.device | None = None) -> LoadKey:
    device = device or resolve_device()
    dtype = resolve_dtype(spec.dtype, device)
    return LoadKey(spec.source, spec.revision, str(device), dtype_name(dtype), arch)


def get_model(spec: ModelSpec, arch: Arch) -> LoadedModel:
    return model_cache().get(load_key(spec, arch))


@lru_cache(maxsize=32)
def _tokenizer(source: str, revision: str) -> Any:
    location, kwargs = pretrained_args(source, revision)
    return AutoTokenizer.from_pretrained(location, **kwargs)


def get_tokenizer(spec: ModelSpec) -> Any:
    """The model's tokenizer without its weights (converting a GGUF source first): what
    `prepare_models` loads ahead of the first request. The web process counts tokens with
    `inference.tokenizing` instead, from the same files, without torch."""
    return _tokenizer(spec.source, spec.revision)
