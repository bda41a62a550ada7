"""The per-process model cache, devices and dtypes, and the one-time GGUF conversion."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch

from inference import loading, locations
from inference.loading import (
    Arch,
    LoadedModel,
    LoadKey,
    ModelCache,
    get_model,
    load_key,
    model_cache,
    parse_bytes,
    resolve_device,
    resolve_dtype,
)
from inference.spec import parse_source
from tests.inference.helpers import demo_spec


def test_device_from_env(monkeypatch):
    monkeypatch.setenv("MODEL_DEVICE", "cpu")
    assert resolve_device() == torch.device("cpu")
    monkeypatch.setenv("MODEL_DEVICE", "auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected
    if not torch.cuda.is_available():
        monkeypatch.setenv("MODEL_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="CUDA"):
            resolve_device()


def test_dtypes():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int3", cpu)


def test_parse_bytes():
    assert parse_bytes("1024") == 1024
    assert parse_bytes("512M") == 512 * 1024**2
    assert parse_bytes("8GiB") == 8 * 1024**3
    assert parse_bytes("1.5g") == int(1.5 * 1024**3)


def test_cache_budget_from_env(monkeypatch):
    monkeypatch.setenv("MODEL_CACHE_MAX_BYTES", "2G")
    monkeypatch.setattr(loading, "_process_cache", None)
    assert model_cache().max_bytes == 2 * 1024**3


def key(name: str) -> LoadKey:
    return LoadKey(f"path:/models/{name}", "", "cpu", "float32", Arch.ENCODER)


class FakeLoader:
    """Stands in for reading weights, so the cache's bookkeeping is tested exactly."""

    def __init__(self, sizes: dict[str, int]):
        self.sizes = sizes
        self.calls: list[str] = []

    def __call__(self, load_key: LoadKey) -> LoadedModel:
        name = load_key.source.rsplit("/", 1)[-1]
        self.calls.append(name)
        return LoadedModel(load_key, torch.nn.Identity(), None, self.sizes[name])


def test_eviction_frees_the_least_recently_used():
    loader = FakeLoader({"a": 100, "b": 100, "c": 100})
    cache = ModelCache(max_bytes=250, loader=loader)
    cache.get(key("a"))
    cache.get(key("b"))
    cache.get(key("a"))  # a is now the most recently used
    cache.get(key("c"))
    assert key("b") not in cache
    assert cache.keys() == [key("a"), key("c")]
    assert cache.total_bytes == 200
    cache.get(key("b"))
    assert loader.calls == ["a", "b", "c", "b"]
    assert key("a") not in cache


def test_a_model_bigger_than_the_budget_still_loads_alone():
    cache = ModelCache(max_bytes=50, loader=FakeLoader({"a": 10, "big": 100}))
    cache.get(key("a"))
    assert cache.get(key("big")).nbytes == 100
    assert cache.keys() == [key("big")]


def test_concurrent_requests_load_once():
    loader = FakeLoader({"a": 1})

    def slow(load_key: LoadKey) -> LoadedModel:
        time.sleep(0.2)
        return loader(load_key)

    cache = ModelCache(max_bytes=None, loader=slow)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get(key("a")))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loader.calls == ["a"]
    assert all(result is results[0] for result in results)


@pytest.mark.models
def test_loader_returns_the_same_object_without_reloading(minilm_spec, minilm):
    cache = model_cache()
    loads = cache.loads
    again = get_model(minilm_spec, Arch.ENCODER)
    assert again is minilm
    assert cache.loads == loads


@pytest.mark.models
def test_real_models_are_evicted_least_recently_used_first(minilm_spec):
    fp32_key = load_key(minilm_spec, Arch.ENCODER)
    bf16_key = load_key(demo_spec("all-minilm-l6-v2", dtype="bfloat16"), Arch.ENCODER)
    cache = ModelCache(max_bytes=None)
    fp32 = cache.get(fp32_key)
    cache.max_bytes = fp32.nbytes + 1  # room for one fp32 copy only
    bf16 = cache.get(bf16_key)
    assert bf16.model.dtype == torch.bfloat16
    assert fp32_key not in cache and bf16_key in cache
    assert cache.loads == 2


@pytest.mark.models
def test_gguf_is_converted_once_to_plain_safetensors(smollm2, monkeypatch):
    gguf = locations.local_path(parse_source(demo_spec("smollm2-135m-instruct").source))
    folder = loading.converted_gguf_dir(gguf)
    assert folder.parent == locations.cache_root()
    assert (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config

    def convert_again(source: Path, destination: Path) -> None:
        raise AssertionError("converted a second time")

    monkeypatch.setattr(loading, "_convert_gguf", convert_again)
    assert loading.converted_gguf_dir(gguf) == folder  # found, not converted again
    assert smollm2.model.dtype == torch.bfloat16


def fake_gguf(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    return gguf


def test_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    gguf = fake_gguf(tmp_path, monkeypatch)

    def broken(source: Path, destination: Path) -> None:
        (destination / "half-written.safetensors").write_bytes(b"x")
        raise OSError("disk full")

    monkeypatch.setattr(loading, "_convert_gguf", broken)
    with pytest.raises(OSError, match="disk full"):
        loading.converted_gguf_dir(gguf)
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_concurrent_conversions_convert_once(tmp_path, monkeypatch):
    gguf = fake_gguf(tmp_path, monkeypatch)
    calls = []

    def convert(source: Path, destination: Path) -> None:
        calls.append(source)
        time.sleep(0.2)
        (destination / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(loading, "_convert_gguf", convert)
    folders = []
    threads = [
        threading.Thread(target=lambda: folders.append(loading.converted_gguf_dir(gguf)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(set(folders)) == 1
    assert (folders[0] / "model.safetensors").read_bytes() == b"weights"


def test_builtin_sources_have_no_weights():
    with pytest.raises(ValueError, match="no weights"):
        loading.pretrained_args("builtin:echo", "")


def test_missing_package_is_reported():
    with pytest.raises(FileNotFoundError):
        locations.local_path(parse_source("pkg:no_such_package_here/model"))
