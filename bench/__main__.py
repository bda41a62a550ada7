"""`python -m bench`: every benchmark, each figure the median of repeated runs with its
spread, written to bench/RESULTS.md (`make bench`).

The runtime and admission benchmarks run first, with no stack up to compete for the CPU;
then one real stack (bench/stack.py: fresh PostgreSQL database, Redis, Celery worker,
uvicorn) serves the pipeline, /v1 TTFT, idle-stream, web start and peer (LiteLLM) benchmarks in
turn. Every
benchmark runs in a spawned child process (bench/isolate.py); the stack, the extra web
processes and the bench databases belong to this process and are stopped and dropped
whatever happens.

    .venv/bin/python -m bench [--quick] [--only runtime,pipeline,...] [--output PATH]
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from bench import (
    admission,
    batching,
    openai_ttft,
    peer,
    pipeline,
    runtime,
    streams,
    vision,
    web_start,
)
from bench.isolate import in_child
from bench.stack import ROOT, Stack, fresh_database, raise_fd_limit, running_stack, web_server

# In run order: the first four need no stack, the rest share one.
BENCHMARKS = (
    "runtime", "batching", "vision", "admission", "pipeline", "openai_ttft", "streams",
    "web_start", "peer",
)  # fmt: skip
DEFAULT_OUTPUT = ROOT / "bench" / "RESULTS.md"
DASH = "\u2013"  # en dash, between the ends of a range
TIMES = "\u00d7"  # the unit of a ratio


# --- Settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """How long and how often each benchmark measures (its own functions' arguments)."""

    name: str
    runtime: dict[str, Any]
    batching: dict[str, Any]
    vision: dict[str, Any]
    admission: dict[str, Any]
    pipeline: dict[str, Any]
    openai_ttft: dict[str, Any]
    streams: int
    streams_rounds: int
    web_start_rounds: int
    peer: dict[str, Any]


FULL = Profile(
    name="full",
    runtime={"repeats": 7, "max_new_tokens": 64, "conversion_repeats": 3},
    batching={"concurrency": (1, 8, 32), "repeats": 5, "max_new_tokens": 32},
    vision={"repeats": 5, "images": 10},
    admission={"clients": 50, "seconds": 5, "rounds": 5},
    pipeline={"seconds": 10, "rounds": 5},
    openai_ttft={"repeats": 15},
    streams=5000,
    streams_rounds=3,
    web_start_rounds=5,
    peer={"seconds": 10, "rounds": 3},
)
# A few minutes on a small machine: enough to see that every part works, not to judge.
QUICK = Profile(
    name="quick",
    runtime={"repeats": 3, "max_new_tokens": 8, "include_conversion": False},
    batching={"concurrency": (1, 8, 32), "repeats": 3, "max_new_tokens": 8},
    vision={"repeats": 3, "images": 3},
    admission={"clients": 50, "seconds": 1, "rounds": 3},
    pipeline={"seconds": 2, "rounds": 3},
    openai_ttft={"repeats": 5},
    streams=200,
    streams_rounds=3,
    web_start_rounds=2,
    peer={"seconds": 2, "rounds": 2},
)


# --- Figures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    op: str  # "<" or ">="
    value: float

    def met(self, x: float) -> bool:
        return x < self.value if self.op == "<" else x >= self.value


@dataclass(frozen=True)
class Figure:
    name: str
    unit: str
    median: float
    low: float
    high: float
    runs: int
    target: Target | None = None

    @classmethod
    def of(
        cls, name: str, unit: str, values: Iterable[float], target: Target | None = None
    ) -> Figure:
        ordered = sorted(values)
        return cls(name, unit, _median(ordered), ordered[0], ordered[-1], len(ordered), target)

    @classmethod
    def from_spread(
        cls,
        name: str,
        unit: str,
        stats: dict[str, float],
        scale: float = 1.0,
        target: Target | None = None,
    ) -> Figure:
        """From runtime.spread()'s summary, which is all the runtime benchmark returns."""
        median, low, high = (stats[key] * scale for key in ("median", "min", "max"))
        return cls(name, unit, median, low, high, int(stats["n"]), target)


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def _median(ordered: list[float]) -> float:
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _pairs(numerators: list[float], denominators: list[float]) -> list[float]:
    """Ratios of runs made back to back: each under the same machine load."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


# --- Benchmarks: run in a child, turned into figures ----------------------------------------


def bench_runtime(profile: Profile) -> Section:
    results = in_child(runtime.run, **profile.runtime)
    generation = results["generation"]
    section = Section("Runtime (in-process, no stack)")
    section.notes.append(
        f"Generation: `{generation['model']}` ({generation['dtype']}, {generation['device']}), "
        f"greedy, {generation['new_tokens']} new tokens; torch threads: "
        f"{results['torch_threads']}. Runner and bare `generate()` runs are interleaved."
    )
    section.figures += [
        Figure.from_spread(
            "runner (streaming) tokens/s", "tok/s", generation["runner_tokens_per_s"]
        ),
        Figure.from_spread(
            "bare generate() tokens/s", "tok/s", generation["bare_generate_tokens_per_s"]
        ),
        Figure.from_spread(
            "runner / bare generate, tokens/s per interleaved pair", "%",
            generation["runner_vs_bare_pairs"], scale=100, target=Target(">=", 97),
        ),
        Figure.from_spread(
            "runner: time per token outside forward()", "µs",
            generation["runner_outside_forward_s_per_token"], scale=1e6,
        ),
        Figure.from_spread(
            "bare generate: time per token outside forward()", "µs",
            generation["bare_outside_forward_s_per_token"], scale=1e6,
        ),
    ]  # fmt: skip
    for slug, loading in results["loading"].items():
        if "note" in loading:
            continue
        section.figures.append(
            Figure.from_spread(f"load {slug}, cold", "ms", loading["cold_s"], 1e3)
        )
        section.figures.append(
            Figure.from_spread(f"load {slug}, warm (cache hit)", "ms", loading["warm_s"], 1e3)
        )
    if "gguf_conversion" in results:
        conversion = results["gguf_conversion"]["seconds"]
        section.figures.append(Figure.from_spread("GGUF → safetensors conversion", "s", conversion))
    else:
        section.notes.append("GGUF conversion skipped (`--quick`).")
    for name, stats in results["embeddings"].items():
        batch = name.removeprefix("batch_").split("_")[0]
        section.figures.append(Figure.from_spread(f"embeddings, batch {batch}", "texts/s", stats))
    return section


def bench_batching(profile: Profile) -> Section:
    # Spawned children cannot unpickle functions defined in `python -m`'s __main__.
    results = in_child(runtime.with_django, batching.run, **profile.batching)
    section = Section("Batched generation in one worker process (in-process, no stack)")
    section.notes.append(
        f"`{batching.MODEL}` on {results['gpu'] or results['device']}, greedy, "
        f"{results['max_new_tokens']} new tokens per request; one at a time, static and "
        "continuous batching interleaved in each repeat."
    )
    section.figures.append(
        Figure.from_spread("one request at a time", "tok/s", results["one_at_a_time"])
    )
    for count in results["concurrency"]:
        for mode in batching.MODES:
            section.figures.append(
                Figure.from_spread(
                    f"{count} concurrent, {mode}", "tok/s", results[f"{mode}_{count}"]
                )
            )
    others = max(results["concurrency"]) - 1
    for mode in batching.MODES:
        section.figures.append(
            Figure.from_spread(
                f"newcomer's first token while {others} run, {mode}",
                "ms",
                results[f"{mode}_newcomer_ttft"],
                scale=1000,
            )
        )
    for name, mib in results["peak_memory_mib"].items():
        section.notes.append(f"Peak memory, {name.replace('_', ' ')}: {mib:.0f} MiB.")
    section.notes.extend(f"{batching.agreement_line(item)}." for item in results["agreement"])
    return section


def bench_vision(profile: Profile) -> Section:
    results = in_child(runtime.with_django, vision.run, **profile.vision)
    section = Section("Vision models at batch 1 (in-process, CPU, no stack)")
    section.notes.append(
        f"One image per call, {profile.vision['images']} calls back to back per repeat, "
        "after one untimed call that loads the model; the images are what `clean_image` "
        "stored (the web tier's validation and re-encoding, measured on its own below)."
    )
    for slug, stats in results["models"].items():
        name = f"{slug}, {stats['image']}"
        section.figures.append(Figure.from_spread(name, "images/s", stats))
    for shows, stats in results["validation"].items():
        name = f"web validation (`clean_image`), {shows}"
        section.figures.append(Figure.from_spread(name, "images/s", stats))
    return section


def bench_admission(profile: Profile) -> Section:
    # This process owns the database, so it is dropped even if the child is killed.
    with fresh_database(admission.ADMISSION_DATABASE_SUFFIX) as database_url:
        results = in_child(admission.run, **profile.admission, database_url=database_url)
    settings = profile.admission
    section = Section("Admission (`inference.admission.admit`, PostgreSQL + Redis, no worker)")
    section.notes.append(
        f"{settings['clients']} concurrent threads, rounds of {settings['seconds']} s, "
        "modes interleaved within each round."
    )
    for name in admission.MODES:
        section.figures.append(Figure.of(f"admissions/s, billing {name}", "adm/s", results[name]))
    for name in ("enforced", "ledger", "money"):
        ratios = _pairs(results[name], results["off"])
        # Issue #12: prices, caps and credits on keep at least 0.8 of billing off.
        target = Target(">=", 0.8) if name == "money" else None
        section.figures.append(Figure.of(f"{name} / off, per round", TIMES, ratios, target))
    return section


def bench_pipeline(stack: Stack, profile: Profile) -> Section:
    results = in_child(pipeline.measure, stack, **profile.pipeline)
    section = Section("Pipeline (real stack, `echo` at full speed, create + SSE until done)")
    section.notes.append(
        f"Rounds of {profile.pipeline['seconds']} s per client count; latency is request "
        "sent → first `output` event received."
    )
    targets = {
        (10, "p50_ms"): Target("<", 5),
        (10, "p99_ms"): Target("<", 20),
        (50, "throughput"): Target(">=", 300),
    }
    labels = {"throughput": ("predictions/s", "pred/s"), "p50_ms": ("first output p50", "ms"),
              "p99_ms": ("first output p99", "ms")}  # fmt: skip
    for clients, figures in results.items():
        for key, (label, unit) in labels.items():
            section.figures.append(
                Figure.of(
                    f"{label}, {clients} client{'s' if clients > 1 else ''}",
                    unit,
                    figures[key],
                    targets.get((clients, key)),
                )
            )
    return section


def bench_openai_ttft(stack: Stack, profile: Profile) -> Section:
    results = in_child(openai_ttft.measure, stack, **profile.openai_ttft)
    section = Section("/v1 time to first token against native SSE (real stack, SmolLM2)")
    section.notes.append("Native and /v1 requests interleaved; the ratio is taken per pair.")
    section.figures += [
        Figure.of("TTFT, native SSE (`/api/v1/predictions`)", "ms", results["native_ms"]),
        Figure.of("TTFT, `/v1/chat/completions` stream", "ms", results["openai_ms"]),
        Figure.of("/v1 ÷ native TTFT, per pair", TIMES, results["pair_ratios"], Target("<", 1.05)),
    ]
    return section


STREAMS_TARGET = Target(">=", 5000)


def bench_streams(stack: Stack, profile: Profile) -> Section:
    rounds = []
    for _ in range(profile.streams_rounds):
        # A fresh web process per round (see streams.run), owned here so it always stops.
        with web_server(stack) as fresh:
            rounds.append(in_child(streams.measure_round, fresh, profile.streams))
    section = Section("Idle SSE streams (one fresh web process per round)")
    section.notes.append(
        f"{profile.streams} streams opened per round on one quiet prediction, then one "
        "event appended to its log; lag is append → arrival on each stream. The streams stay "
        "open until every one has the event."
    )

    def column(key: str) -> list[float]:
        return [result[key] for result in rounds]

    section.figures += [
        Figure.of("streams held open that got the event", "", column("delivered"), STREAMS_TARGET),
        Figure.of("streams refused or broken", "", column("refused")),
        Figure.of("web process memory per open stream", "KiB", column("kib_per_stream")),
        Figure.of("delivery lag p50", "ms", column("lag_p50_ms")),
        Figure.of("delivery lag p99", "ms", column("lag_p99_ms")),
        Figure.of("delivery lag max", "ms", column("lag_max_ms")),
        Figure.of("stream opens (response headers)", "opens/s", column("opens_per_second")),
        Figure.of("web process threads while holding them", "", column("web_threads")),
    ]  # fmt: skip
    return section


def bench_web_start(stack: Stack, profile: Profile) -> Section:
    rounds = [in_child(web_start.measure_round, stack) for _ in range(profile.web_start_rounds)]
    section = Section("A web process from start to serving (one fresh process per round)")
    section.notes.append(
        "Spawn → first `/readyz` 200; RSS then and after serving one prediction and one "
        "/v1 chat completion; whether torch or transformers was mapped into the process."
    )

    def column(key: str) -> list[float]:
        return [result[key] for result in rounds]

    section.figures += [
        Figure.of("spawn → /readyz 200", "s", column("ready_seconds"), Target("<", 2)),
        Figure.of("RSS when ready", "MiB", column("rss_ready_mib"), Target("<", 150)),
        Figure.of("RSS after serving", "MiB", column("rss_served_mib"), Target("<", 150)),
        Figure.of("rounds with torch/transformers loaded", "", column("heavy_loaded"),
                  Target("<", 1)),
    ]  # fmt: skip
    return section


def bench_peer(stack: Stack, profile: Profile) -> Section:
    # The floor and LiteLLM belong to this process, like the stack, so they always stop.
    with peer.peers() as (floor, litellm):
        results = in_child(peer.measure, stack, floor, litellm, **profile.peer)
    section = Section("Peer: portal `/v1` stream vs LiteLLM proxy vs a no-delay echo floor")
    section.notes += [
        f"Same 20-word prompt, streamed; rounds of {profile.peer['seconds']} s interleaved "
        "portal, LiteLLM, floor. Added TTFT: first content delta, minus the floor's in the "
        "same round. CPU: the portal's web, worker, PostgreSQL and Redis processes; "
        "LiteLLM's proxy process. Medians of the rounds:",
        "",
        *peer.markdown_table(results),
    ]
    figures = {"portal_rps": ("portal", "req/s"), "litellm_rps": ("LiteLLM", "req/s"),
               "floor_rps": ("floor", "req/s"), "rps_ratio": ("portal ÷ LiteLLM, per round", TIMES),
               "portal_added_p50_ms": ("portal added TTFT p50", "ms"),
               "litellm_added_p50_ms": ("LiteLLM added TTFT p50", "ms"),
               "portal_cpu_ms": ("portal CPU per prediction", "ms")}  # fmt: skip
    for clients, columns in results.items():
        for key, (label, unit) in figures.items():
            values = [value for value in columns[key] if math.isfinite(value)]
            if values:
                name = f"{label}, {clients} client{'s' if clients > 1 else ''}"
                section.figures.append(Figure.of(name, unit, values))
    return section


STANDALONE: dict[str, Callable[[Profile], Section]] = {
    "runtime": bench_runtime,
    "batching": bench_batching,
    "vision": bench_vision,
    "admission": bench_admission,
}
ON_STACK: dict[str, Callable[[Stack, Profile], Section]] = {
    "pipeline": bench_pipeline,
    "openai_ttft": bench_openai_ttft,
    "streams": bench_streams,
    "web_start": bench_web_start,
    "peer": bench_peer,
}


def attempt(name: str, action: Callable[[], Section]) -> Section:
    """One benchmark; its failure is reported in the results, and the others still run."""
    print(f"\n=== {name} ===", flush=True)
    started = time.monotonic()
    try:
        section = action()
    except Exception as error:  # any failure becomes the section's error
        print(getattr(error, "details", None) or traceback.format_exc(), file=sys.stderr)
        section = Section(name, error=str(error) or repr(error))
    section.seconds = time.monotonic() - started
    print(f"=== {name}: {section.seconds:.0f} s ===", flush=True)
    return section


def run_all(selected: list[str], profile: Profile) -> list[Section]:
    sections = [
        attempt(name, lambda name=name: STANDALONE[name](profile))
        for name in selected
        if name in STANDALONE
    ]
    on_stack = [name for name in selected if name in ON_STACK]
    if not on_stack:
        return sections
    print("\n=== starting the stack ===", flush=True)
    pending = list(on_stack)
    try:
        with running_stack() as stack:
            while pending:
                name = pending.pop(0)
                sections.append(attempt(name, lambda name=name: ON_STACK[name](stack, profile)))
    except Exception as error:  # the stack failed to start
        traceback.print_exc()
        sections += [Section(name, error=f"the stack: {error}") for name in pending]
    return sections


# --- The machine and the run -------------------------------------------------------------------


def _cpuinfo() -> str:
    text = Path("/proc/cpuinfo").read_text()
    models = [
        line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")
    ]
    logical = sum(1 for line in text.splitlines() if line.startswith("processor"))
    model = models[0] if models else platform.processor() or "unknown CPU"
    return f"{model}, {logical} logical cores"


def _memory() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"


def _torch() -> tuple[str, str]:
    """Asked of a child interpreter, so that this process never imports torch."""
    code = (
        "import torch; print(torch.__version__); "
        "print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
        ).stdout.split("\n")
        return out[0], out[1]
    except (subprocess.SubprocessError, IndexError):
        return "unknown", "unknown"


def _git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (subprocess.SubprocessError, OSError):
        return "unknown"
    return f"`{commit}`" + (" + uncommitted changes" if dirty else "")


def header(profile: Profile, started: datetime.datetime, seconds: float) -> list[str]:
    torch_version, cuda_device = _torch()
    lines = [
        "# Benchmark results",
        "",
        "Generated by `make bench` (`python -m bench`); regenerate rather than edit. Each "
        f"figure is the median of its runs, with the min{DASH}max spread over those runs.",
        "",
    ]
    if profile is QUICK:
        lines += [
            "> **Quick run (`--quick`)**: few repeats, short rounds, fewer streams. The "
            "figures show that every benchmark works; they are not for judging targets.",
            "",
        ]
    lines += [
        f"- Date: {started:%Y-%m-%d %H:%M} UTC (took {seconds / 60:.1f} min)",
        f"- Command: `{shlex.join(sys.orig_argv)}`",
        f"- Commit: {_git_commit()}",
        f"- CPU: {_cpuinfo()}",
        f"- RAM: {_memory()}",
        f"- Python: {platform.python_version()} ({platform.python_implementation()})",
        f"- torch: {torch_version}; CUDA device: {cuda_device}",
        "",
    ]
    return lines


# --- Markdown --------------------------------------------------------------------------------


def _number(x: float) -> str:
    """Three significant digits, never exponent notation; whole numbers (counts) as such."""
    if not math.isfinite(x) or x == int(x):
        return f"{x:.0f}" if math.isfinite(x) else f"{x}"
    decimals = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def _with_unit(x: float, unit: str) -> str:
    return f"{_number(x)} {unit}".rstrip()


def _target_cell(figure: Figure) -> str:
    if figure.target is None:
        return ""
    target = figure.target
    verdict = "met" if target.met(figure.median) else "**missed**"
    bound = f"{target.value:g} {figure.unit}".rstrip()
    return f"{'<' if target.op == '<' else '≥'} {bound}: {verdict}"


def section_markdown(section: Section) -> list[str]:
    lines = [f"## {section.title}", ""]
    if section.error:
        return [*lines, f"**Failed** after {section.seconds:.0f} s: `{section.error}`", ""]
    lines += [*section.notes, ""] if section.notes else []
    lines += [
        f"| Figure | Median | Spread (min{DASH}max) | Runs | Target |",
        "|---|---:|---:|---:|---|",
    ]
    for figure in section.figures:
        spread = f"{_number(figure.low)}{DASH}{_number(figure.high)}"
        lines.append(
            f"| {figure.name} | {_with_unit(figure.median, figure.unit)} | {spread} | "
            f"{figure.runs} | {_target_cell(figure)} |"
        )
    return [*lines, "", f"_{section.seconds:.0f} s_", ""]


# --- Command line ------------------------------------------------------------------------------


def _parse_only(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(BENCHMARKS)}; got {value!r}")
    return names


def _terminate(signum: int, _frame: Any) -> NoReturn:
    # SIGTERM as an exception, so that every `finally` stops processes and drops databases.
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, short rounds")
    parser.add_argument("--only", type=_parse_only, default=list(BENCHMARKS),
                        help=f"comma-separated subset of: {','.join(BENCHMARKS)}")  # fmt: skip
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    raise_fd_limit()
    profile = QUICK if args.quick else FULL
    selected = [name for name in BENCHMARKS if name in args.only]  # always in run order
    started = datetime.datetime.now(datetime.UTC)
    began = time.monotonic()
    sections = run_all(selected, profile)
    lines = header(profile, started, time.monotonic() - began)
    for section in sections:
        lines += section_markdown(section)
    args.output.write_text("\n".join(lines).rstrip() + "\n")
    print(f"\nwrote {args.output}", flush=True)
    return 1 if any(section.error for section in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
