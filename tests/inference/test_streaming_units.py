"""Stop strings, incremental decoding and the echo model: no weights needed."""

from __future__ import annotations

import json
import time

import pytest

from inference.runners import FinishReason, get_runner
from inference.runners.echo import split_pieces
from inference.runners.generation import StopMatcher, resolve_params
from inference.runners.transformers_backend import IncrementalDecoder
from tests.inference.helpers import collect, demo_spec, outputs


def feed(matcher: StopMatcher, deltas: list[str]) -> tuple[str, bool]:
    emitted = []
    for delta in deltas:
        text, stopped = matcher.push(delta)
        emitted.append(text)
        if stopped:
            return "".join(emitted), True
    return "".join(emitted) + matcher.flush(), False


@pytest.mark.parametrize(
    ("stops", "deltas", "expected", "stopped"),
    [
        (["END"], ["Hello ", "wor", "ld"], "Hello world", False),
        (["END"], ["Hello E", "N", "D more"], "Hello ", True),
        (["\n\n"], ["a\n", "\nb"], "a", True),
        (["xyz", "yz"], ["ab", "y", "zq"], "ab", True),
        (["ab"], ["a", "a", "c"], "aac", False),
        ([], ["a", "b"], "ab", False),
    ],
)
def test_stop_matcher(stops, deltas, expected, stopped):
    assert feed(StopMatcher(stops), deltas) == (expected, stopped)


def test_stop_matcher_holds_back_only_a_possible_stop_prefix():
    matcher = StopMatcher(["STOP"])
    assert matcher.push("abc ST") == ("abc ", False)
    assert matcher.push("A") == ("STA", False)  # "STA" cannot begin "STOP"
    assert matcher.push("x STO") == ("x ", False)
    assert matcher.push("PS") == ("", True)


class CharTokenizer:
    """A byte-level tokenizer: one UTF-8 byte per token, like the worst case of BPE."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) -> str:
        return bytes(ids).decode(errors="replace")


def test_incremental_decoder_never_splits_a_character():
    tokenizer = CharTokenizer()
    text = "Café 🚀 naïve — 日本語"
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.push(token) for token in tokenizer.encode(text)]
    assert "".join(deltas) + decoder.flush() == text
    assert not any("\ufffd" in delta for delta in deltas)


def test_params_fall_back_to_listing_defaults():
    spec = demo_spec("smollm2-135m-instruct")
    params = resolve_params(spec, {"prompt": "hi", "temperature": 0})
    assert params.max_new_tokens == 256 and params.temperature == 0 and params.top_p == 0.9
    assert params.greedy
    assert (
        resolve_params(spec, {"prompt": "hi"}).seed != resolve_params(spec, {"prompt": "hi"}).seed
    )


def test_echo_pieces_rejoin_to_the_text():
    text = "  Hello,\n world  again "
    assert "".join(split_pieces(text)) == text


def run_echo(data, should_cancel=None, **spec_changes):
    spec = demo_spec("echo", **spec_changes)
    runner = get_runner("text-generation")
    stream = (
        runner.run(spec, data) if should_cancel is None else runner.run(spec, data, should_cancel)
    )
    return collect(stream)


def test_echo_streams_its_input_back():
    events, result = run_echo({"prompt": "one two three four", "tokens_per_second": 0})
    assert outputs(events) == ["one", " two", " three", " four"]
    assert result.output == "one two three four"
    assert (result.metrics.input_tokens, result.metrics.output_tokens) == (4, 4)
    assert result.finish_reason == FinishReason.STOP
    assert json.loads(json.dumps([event.as_dict() for event in events]))


def test_echo_paces_tokens():
    started = time.perf_counter()
    run_echo({"prompt": "a b c d e f", "tokens_per_second": 50})
    assert time.perf_counter() - started >= 5 / 50


def test_echo_rate_comes_from_the_listing_by_default():
    started = time.perf_counter()
    run_echo({"prompt": "a b c"}, options={"tokens_per_second": 40})
    assert time.perf_counter() - started >= 2 / 40


def test_echo_honours_max_new_tokens_stop_and_messages():
    _, result = run_echo({"prompt": "a b c d", "max_new_tokens": 2, "tokens_per_second": 0})
    assert (result.output, result.finish_reason) == ("a b", FinishReason.LENGTH)
    _, result = run_echo({"prompt": "a b STOP c", "stop": ["STOP"], "tokens_per_second": 0})
    assert (result.output, result.finish_reason) == ("a b ", FinishReason.STOP)
    chat = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second question"},
    ]
    _, result = run_echo({"messages": chat, "tokens_per_second": 0})
    assert result.output == "second question"


def test_echo_cancel():
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) >= 2

    _, result = run_echo({"prompt": "a b c d e f", "tokens_per_second": 0}, should_cancel)
    assert result.finish_reason == FinishReason.CANCELED
    assert result.output == "a b"
    assert result.metrics.output_tokens == 2


def test_registry_has_a_runner_per_task():
    from models_hub.models import Task

    for task in Task.values:
        assert get_runner(task).task == task
    with pytest.raises(LookupError):
        get_runner("painting")
