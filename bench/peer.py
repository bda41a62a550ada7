"""Peer benchmark (issue #14): the portal's streamed `/v1/chat/completions` side by side
with LiteLLM proxy, both in front of the same no-delay OpenAI-style echo server (the floor),
and the floor itself, from one load generator in one interleaved run.

Three targets, one model each, the same 20-word prompt, streamed (SSE):

- portal: the real stack (bench/stack.py: uvicorn + Celery worker, fresh PostgreSQL
  database, Redis, the bench plan with billing enforced) serving the `echo` model at full
  speed. `/v1` has no `tokens_per_second` parameter, so the bench sets the echo listing's
  rate to 0 in its own throwaway database (what bench/pipeline.py passes as input).
- litellm: LiteLLM proxy (one uvicorn worker, master key, no database, logging off)
  routing `echo` to the floor.
- floor: `floor_app` below, a raw ASGI app under uvicorn that streams the prompt's words
  back as chat-completion chunks with no delay, then `[DONE]`.

For each client count, rounds run portal, litellm, floor, portal, ... so that the
machine's drift hits all three alike. Each request is timed from sending to the first
non-empty `content` delta (first token) and to `[DONE]`. Added first-token latency is a
target's percentile minus the floor's in the same round; ratios are taken per round.
CPU per prediction sums utime+stime from /proc of the portal's processes (web, worker and
its pool, PostgreSQL's backends of the bench database plus its auxiliary processes, and
redis-server) over each portal round; the load generator is not counted. LiteLLM's is its
proxy's process group over each LiteLLM round.

LiteLLM is installed on first use into its own virtualenv, bench/.peer-venv/ (gitignored,
about 750 MB, under a minute from a local index), and reused afterwards.

    .venv/bin/python bench/peer.py [--clients 1,10,50] [--seconds 5] [--rounds 3]
    .venv/bin/python -m bench --only peer [--quick] --output /tmp/peer.md

The first prints a markdown table; the second writes a RESULTS.md section (note that
`--only` writes a file with that section alone, hence `--output`). Set
BENCH_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/portal_peer) and REDIS_URL
to keep off other runs' databases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import ROOT, Stack, free_port, raise_fd_limit, running_stack, stop

PROMPT = (
    "the quick brown fox jumps over the lazy dog while five boxing wizards "
    "jump quickly near black quartz sphinx statues"
)
assert len(PROMPT.split()) == 20
MODEL = "echo"
CLIENTS = (1, 10, 50)
TARGETS = ("portal", "litellm", "floor")  # the interleaving order within a round
PEER_VENV = ROOT / "bench" / ".peer-venv"
LITELLM_PACKAGE = "litellm[proxy]"
START_TIMEOUT_S = 180  # LiteLLM's first import is slow
REQUEST_TIMEOUT_S = 60
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TIMES = "\u00d7"  # the unit of a ratio
PIECE_RE = re.compile(r"\s*\S+")  # a word with the whitespace before it, as the echo model


# --- The floor: an OpenAI-style echo server with no delay -----------------------------------

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    users = [m for m in messages if m.get("role") == "user"] or messages
    content = users[-1].get("content") or ""
    if isinstance(content, list):  # content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-floor",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _usage(words: int) -> dict[str, int]:
    return {"prompt_tokens": words, "completion_tokens": words, "total_tokens": 2 * words}


async def _read_body(receive: Receive) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stream_words(send: Send, request: dict[str, Any], pieces: list[str]) -> None:
    model = request.get("model", MODEL)
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    frames = [_chunk(model, {"role": "assistant", "content": ""})]
    frames += [_chunk(model, {"content": piece}) for piece in pieces]
    frames.append(_chunk(model, {}, "stop"))
    if (request.get("stream_options") or {}).get("include_usage"):
        usage = {"id": "chatcmpl-floor", "object": "chat.completion.chunk", "model": model,
                 "created": int(time.time()), "choices": [],
                 "usage": _usage(len(pieces))}  # fmt: skip
        frames.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    frames.append(b"data: [DONE]\n\n")
    for frame in frames:  # one body message per chunk, as a token-by-token server sends
        await send({"type": "http.response.body", "body": frame, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def floor_app(scope: Scope, receive: Receive, send: Send) -> None:
    """`POST .../chat/completions`: the last user message back, word by word, no delay."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    if scope["type"] != "http":
        return None
    if scope["path"] == "/healthz":
        return await _respond(send, 200, b"text/plain", b"ok")
    if scope["method"] != "POST" or not scope["path"].endswith("/chat/completions"):
        return await _respond(send, 404, b"text/plain", b"not found")
    request = json.loads(await _read_body(receive))
    pieces = PIECE_RE.findall(_last_user_text(request.get("messages") or []))
    if request.get("stream"):
        return await _stream_words(send, request, pieces)
    completion = {
        "id": "chatcmpl-floor",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", MODEL),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "".join(pieces)}}],
        "usage": _usage(len(pieces)),
    }  # fmt: skip
    return await _respond(send, 200, b"application/json", json.dumps(completion).encode())


# --- Processes: the floor and LiteLLM --------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """An OpenAI-compatible endpoint: `{base_url}/v1/chat/completions`."""

    name: str
    base_url: str
    api_key: str
    model: str = MODEL
    pgid: int | None = None  # its process group, for CPU figures (LiteLLM)


def _wait_http(url: str, process: subprocess.Popen, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        with suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@contextmanager
def floor_server() -> Iterator[Target]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.peer:floor_app", "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log", "--log-level", "warning", "--lifespan", "on"],
        cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_http(f"{base_url}/healthz", process)
        yield Target("floor", base_url, "floor-needs-no-key", pgid=process.pid)
    finally:
        stop([process])


def ensure_litellm() -> Path:
    """bench/.peer-venv/bin/litellm, made on first use (never in the project's .venv)."""
    litellm = PEER_VENV / "bin" / "litellm"
    if litellm.exists():
        return litellm
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEER_VENV}", flush=True)
        base = shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", str(PEER_VENV)], check=True)
    print(f"installing {LITELLM_PACKAGE} into {PEER_VENV} (a few minutes)", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", LITELLM_PACKAGE], check=True)
    return litellm


def litellm_config(floor: Target, master_key: str) -> str:
    """YAML (JSON is YAML): one model routed to the floor; no database, logging off."""
    config = {
        "model_list": [{
            "model_name": MODEL,
            "litellm_params": {"model": f"openai/{MODEL}", "api_base": f"{floor.base_url}/v1",
                               "api_key": floor.api_key},
        }],
        "litellm_settings": {"set_verbose": False, "turn_off_message_logging": True,
                             "success_callback": [], "failure_callback": []},
        "general_settings": {"master_key": master_key, "disable_spend_logs": True,
                             "disable_error_logs": True},
    }  # fmt: skip
    return json.dumps(config, indent=2)


def _litellm_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.pop("VIRTUAL_ENV", None)
    env.update(
        LITELLM_LOG="ERROR",
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the price list at start
        LITELLM_TELEMETRY="False",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def litellm_proxy(floor: Target) -> Iterator[Target]:
    litellm = ensure_litellm()
    master_key = f"sk-peer-{secrets.token_hex(16)}"  # per run, never written to the repo
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="peer-litellm-") as folder:
        config = Path(folder) / "config.yaml"
        config.write_text(litellm_config(floor, master_key))
        log = Path(folder) / "litellm.log"  # its banner and any error, shown if it fails
        with log.open("wb") as output:
            process = subprocess.Popen(
                [str(litellm), "--config", str(config), "--host", "127.0.0.1",
                 "--port", str(port), "--num_workers", "1"],
                cwd=folder, env=_litellm_env(), start_new_session=True,
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            base_url = f"http://127.0.0.1:{port}"
            try:
                _wait_http(f"{base_url}/health/liveliness", process)
            except (RuntimeError, TimeoutError):
                print(log.read_text(errors="replace")[-4000:], file=sys.stderr, flush=True)
                raise
            yield Target("litellm", base_url, master_key, pgid=process.pid)
        finally:
            stop([process])


@contextmanager
def peers() -> Iterator[tuple[Target, Target]]:
    """The floor and LiteLLM in front of it, both stopped on the way out."""
    with floor_server() as floor, litellm_proxy(floor) as litellm:
        yield floor, litellm


# --- The portal at full speed ---------------------------------------------------------------

# Calls run the listing's newest version: the change is recorded as one, as a publish would.
FULL_SPEED = (
    "from models_hub.models import ModelListing; "
    "from models_hub.versions import ensure_current_version; "
    "listing = ModelListing.objects.get(slug='{model}'); "
    "listing.options = {{**listing.options, 'tokens_per_second': 0}}; "
    "listing.save(update_fields=['options']); "
    "ensure_current_version(listing)"
)


def portal_target(stack: Stack) -> Target:
    """The stack's echo listing set to stream at full speed (its database is the bench's)."""
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", FULL_SPEED.format(model=MODEL)],
        cwd=ROOT, env=stack.env, check=True, capture_output=True,
    )  # fmt: skip
    return Target("portal", stack.base_url, stack.token)


# --- CPU time from /proc -------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: [0] is field 3 (state)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _cpu_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12])  # utime + stime


def _is_ours_or_auxiliary(cmdline: str, database: str) -> bool:
    """A PostgreSQL process that serves the bench database or the whole server (postmaster,
    WAL writer, checkpointer...), not another database's client backend."""
    words = cmdline.split()
    if database in words:
        return True
    return not any("(" in word or word == "[local]" for word in words)


def portal_pids(database_url: str) -> set[int]:
    """Processes started with this stack's DATABASE_URL (web, worker, its pool), the
    PostgreSQL processes serving it, and redis-server."""
    database = database_url.rsplit("/", 1)[1]
    marker = f"DATABASE_URL={database_url}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            comm = (entry / "comm").read_text().strip()
            if comm == "redis-server":
                pids.add(int(entry.name))
            elif comm == "postgres":
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if _is_ours_or_auxiliary(cmdline, database):
                    pids.add(int(entry.name))
            elif marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.add(int(entry.name))
    return pids


def group_pids(pgid: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                if int(_stat_fields(int(entry.name))[2]) == pgid:
                    pids.add(int(entry.name))
    return pids


def cpu_snapshot(pids: set[int]) -> dict[int, int]:
    ticks = {}
    for pid in pids:
        with suppress(OSError, IndexError, ValueError):
            ticks[pid] = _cpu_ticks(pid)
    return ticks


def cpu_seconds(before: dict[int, int], after: dict[int, int]) -> float:
    """Processes that started in between count whole; ones that ended are lost."""
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items()) / CLOCK_TICKS


# --- The load generator ---------------------------------------------------------------------


class StreamError(RuntimeError):
    pass


@dataclass
class RoundResult:
    target: str
    clients: int
    seconds: float = 0.0
    first_token_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_s: float | None = None

    @property
    def rate(self) -> float:
        return len(self.total_s) / self.seconds if self.seconds else 0.0


def _has_content(data: str) -> bool:
    choices = json.loads(data).get("choices") or []
    return bool(choices and (choices[0].get("delta") or {}).get("content"))


def request_body(target: Target) -> dict[str, Any]:
    return {
        "model": target.model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 64,
        "stream": True,
    }


async def one_request(client: httpx.AsyncClient, target: Target) -> tuple[float, float]:
    """Seconds from sending to the first content delta, and to `[DONE]`."""
    sent = time.perf_counter()
    first = None
    async with client.stream("POST", "/v1/chat/completions", json=request_body(target)) as r:
        if r.status_code != 200:
            await r.aread()
            raise StreamError(f"{target.name}: HTTP {r.status_code}: {r.text[:300]}")
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                if first is None:
                    raise StreamError(f"{target.name}: [DONE] before any content")
                return first, time.perf_counter() - sent
            if first is None and _has_content(data):
                first = time.perf_counter() - sent
    raise StreamError(f"{target.name}: the stream ended without [DONE]")


def _client(target: Target, clients: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    return httpx.AsyncClient(
        base_url=target.base_url,
        headers={"Authorization": f"Bearer {target.api_key}"},
        limits=limits,
        timeout=REQUEST_TIMEOUT_S,
    )


async def load_round(target: Target, clients: int, seconds: float) -> RoundResult:
    """`clients` closed loops, each sending its next request when the last one ends."""
    result = RoundResult(target.name, clients)
    async with _client(target, clients) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def loop() -> None:
            while time.perf_counter() < deadline:
                try:
                    first, total = await one_request(client, target)
                except (httpx.HTTPError, StreamError) as error:
                    result.errors += 1
                    if result.errors == 1:
                        print(f"  {error!r}", file=sys.stderr, flush=True)
                    await asyncio.sleep(0.05)
                    continue
                result.first_token_s.append(first)
                result.total_s.append(total)

        await asyncio.gather(*(loop() for _ in range(clients)))
        result.seconds = time.perf_counter() - started
    return result


async def echo_check(target: Target) -> float:
    """One request read whole: the prompt must come back; returns its seconds."""
    async with _client(target, 1) as client:
        sent = time.perf_counter()
        response = await client.post("/v1/chat/completions", json={**request_body(target),
                                                                   "stream": False})  # fmt: skip
        elapsed = time.perf_counter() - sent
    response.raise_for_status()
    text = response.json()["choices"][0]["message"]["content"]
    if text.strip() != PROMPT:
        raise RuntimeError(f"{target.name} did not echo the prompt: {text!r}")
    return elapsed


def target_pids(target: Target, stack: Stack) -> set[int]:
    """The processes whose CPU a round of this target is charged with (none: the floor)."""
    if target.name == "portal":
        return portal_pids(stack.env["DATABASE_URL"])
    if target.name == "litellm" and target.pgid is not None:
        return group_pids(target.pgid)
    return set()


def measured_round(target: Target, clients: int, seconds: float, stack: Stack) -> RoundResult:
    """One round, with the CPU of the target's own processes around it."""
    pids = target_pids(target, stack)
    before = cpu_snapshot(pids)
    result = asyncio.run(load_round(target, clients, seconds))
    if pids:
        # Processes may have started during the round (pool connections, pool children).
        after = cpu_snapshot(pids | target_pids(target, stack))
        result.cpu_s = cpu_seconds(before, after)
    return result


# --- Figures -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(a) else math.nan


def round_figures(results: dict[str, RoundResult]) -> dict[str, float]:
    """One interleaved round (portal, litellm, floor) as figures; latencies in ms."""
    floor, portal, litellm = results["floor"], results["portal"], results["litellm"]
    floor_p50 = percentile(floor.first_token_s, 0.5)
    floor_p99 = percentile(floor.first_token_s, 0.99)
    figures: dict[str, float] = {f"{name}_rps": results[name].rate for name in TARGETS}
    for name, result in (("portal", portal), ("litellm", litellm)):
        figures[f"{name}_added_p50_ms"] = (percentile(result.first_token_s, 0.5) - floor_p50) * 1e3
        figures[f"{name}_added_p99_ms"] = (percentile(result.first_token_s, 0.99) - floor_p99) * 1e3
        done = len(result.total_s)
        cpu = result.cpu_s if result.cpu_s is not None else math.nan
        figures[f"{name}_cpu_ms"] = cpu / done * 1e3 if done else math.nan
        figures[f"{name}_errors"] = result.errors
    figures["floor_p50_ms"] = floor_p50 * 1e3
    figures["floor_errors"] = floor.errors
    figures["rps_ratio"] = _ratio(figures["portal_rps"], figures["litellm_rps"])
    figures["added_p50_ratio"] = _ratio(
        figures["portal_added_p50_ms"], figures["litellm_added_p50_ms"]
    )
    return figures


def measure(
    stack: Stack,
    floor: Target,
    litellm: Target,
    clients: tuple[int, ...] = CLIENTS,
    seconds: float = 5,
    rounds: int = 3,
) -> dict[int, dict[str, list[float]]]:
    """Per client count, each figure's value in every round (see round_figures)."""
    raise_fd_limit()
    targets = {"portal": portal_target(stack), "litellm": litellm, "floor": floor}
    for target in targets.values():
        took = asyncio.run(echo_check(target))
        print(f"{target.name}: echo check passed ({took * 1e3:.1f} ms)", flush=True)
    counted = len(portal_pids(stack.env["DATABASE_URL"]))
    print(f"portal CPU: {counted} processes (web, worker, PostgreSQL, Redis)", flush=True)
    results: dict[int, dict[str, list[float]]] = {}
    for count in clients:
        columns: dict[str, list[float]] = {}
        for index in range(rounds):
            by_target = {name: measured_round(targets[name], count, seconds, stack)
                         for name in TARGETS}  # fmt: skip
            figures = round_figures(by_target)
            for key, value in figures.items():
                columns.setdefault(key, []).append(value)
            print(
                f"{count:>3} clients, round {index + 1}/{rounds}: req/s portal "
                f"{figures['portal_rps']:.0f}, litellm {figures['litellm_rps']:.0f}, floor "
                f"{figures['floor_rps']:.0f}; added p50 portal "
                f"{figures['portal_added_p50_ms']:.1f} ms, litellm "
                f"{figures['litellm_added_p50_ms']:.1f} ms",
                flush=True,
            )
        results[count] = columns
    return results


def _median(values: list[float]) -> float:
    finite = [value for value in values if math.isfinite(value)]
    return statistics.median(finite) if finite else math.nan


def _cell(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


TABLE_HEADER = (
    "| Clients | Portal req/s | LiteLLM req/s | Floor req/s | Portal ÷ LiteLLM req/s "
    "| Portal added TTFT p50 (p99) | LiteLLM added TTFT p50 (p99) | Portal ÷ LiteLLM added p50 "
    "| Floor TTFT p50 | Portal CPU/pred | LiteLLM CPU/req | Errors (P/L/F) |"
)


def markdown_table(results: dict[int, dict[str, list[float]]]) -> list[str]:
    """Medians over rounds; ratios are medians of per-round ratios."""
    lines = [TABLE_HEADER, "|" + "---:|" * TABLE_HEADER.count(" | ") + "---:|"]
    for count, columns in results.items():
        m = {key: _median(values) for key, values in columns.items()}
        errors = "/".join(f"{sum(columns[f'{name}_errors']):.0f}" for name in TARGETS)
        lines.append(
            f"| {count} | {_cell(m['portal_rps'])} | {_cell(m['litellm_rps'])} "
            f"| {_cell(m['floor_rps'])} | {_cell(m['rps_ratio'], 2)}{TIMES} "
            f"| {_cell(m['portal_added_p50_ms'])} ({_cell(m['portal_added_p99_ms'])}) ms "
            f"| {_cell(m['litellm_added_p50_ms'])} ({_cell(m['litellm_added_p99_ms'])}) ms "
            f"| {_cell(m['added_p50_ratio'], 2)}{TIMES} | {_cell(m['floor_p50_ms'], 2)} ms "
            f"| {_cell(m['portal_cpu_ms'], 2)} ms | {_cell(m['litellm_cpu_ms'], 2)} ms "
            f"| {errors} |"
        )
    return lines


# --- Command line ---------------------------------------------------------------------------


def run(clients: tuple[int, ...] = CLIENTS, seconds: float = 5, rounds: int = 3) -> list[str]:
    raise_fd_limit()
    with running_stack() as stack, peers() as (floor, litellm):
        results = measure(stack, floor, litellm, clients, seconds, rounds)
    return markdown_table(results)


def _parse_clients(value: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in value.split(",") if part.strip())
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"positive integers, comma-separated; got {value!r}")
    return counts


def _terminate(signum: int, _frame: Any) -> NoReturn:
    # SIGTERM as an exception, so that every `finally` stops processes and drops databases.
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=_parse_clients, default=CLIENTS)
    parser.add_argument("--seconds", type=float, default=5, help="per target and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    table = run(args.clients, args.seconds, args.rounds)
    print("\n" + "\n".join(table))


if __name__ == "__main__":
    main()
