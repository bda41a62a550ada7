"""Text generation with the real SmolLM2 from its wheel: streaming, seeds, stops, cancel."""

from __future__ import annotations

import pytest
import torch

from inference.runners import FinishReason, get_runner
from inference.runners.transformers_backend import encode_prompt
from tests.inference.helpers import collect, outputs

pytestmark = pytest.mark.models

PROMPT = {"prompt": "Write a short poem about the sea.", "temperature": 0}


def run(spec, data, should_cancel=None):
    runner = get_runner("text-generation")
    if should_cancel is None:
        return collect(runner.run(spec, data))
    return collect(runner.run(spec, data, should_cancel))


def test_streams_several_deltas_that_add_up_to_the_output(smollm2_spec, smollm2):
    events, result = run(smollm2_spec, {**PROMPT, "max_new_tokens": 16})
    deltas = outputs(events)
    assert len(deltas) > 1
    assert "".join(deltas) == result.output
    assert result.output.strip()
    assert result.metrics.output_tokens == 16
    assert result.finish_reason == FinishReason.LENGTH
    assert result.metrics.time_to_first_token is not None


def test_counts_tokens_exactly(smollm2_spec, smollm2):
    data = {**PROMPT, "max_new_tokens": 8}
    _, result = run(smollm2_spec, data)
    # Input: the prompt through the chat template, as the tokenizer counts it.
    assert result.metrics.input_tokens == len(encode_prompt(smollm2.tokenizer, data))
    assert result.metrics.input_tokens > len(smollm2.tokenizer(PROMPT["prompt"])["input_ids"])
    # Output: the tokens sampled (here 8 new, no end-of-sequence within them).
    assert result.metrics.output_tokens == 8


def test_greedy_output_matches_bare_generate(smollm2_spec, smollm2):
    data = {**PROMPT, "max_new_tokens": 12}
    _, result = run(smollm2_spec, data)
    ids = torch.tensor([encode_prompt(smollm2.tokenizer, data)])
    with torch.inference_mode():
        generated = smollm2.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False
        )
    new_ids = generated[0, ids.shape[1] :].tolist()
    expected = smollm2.tokenizer.decode(new_ids, skip_special_tokens=True)
    assert result.output == expected
    assert result.metrics.output_tokens == len(new_ids)


def test_same_seed_gives_the_same_text(smollm2_spec, smollm2):
    data = {"prompt": "Name a colour.", "temperature": 1.0, "top_p": 0.95, "max_new_tokens": 8}
    events_a, first = run(smollm2_spec, {**data, "seed": 1234})
    _, second = run(smollm2_spec, {**data, "seed": 1234})
    assert first.output == second.output
    assert "Using seed: 1234" in [event.data for event in events_a if event.type == "log"]
    _, other = run(smollm2_spec, {**data, "seed": 99})
    assert other.output != first.output


def test_stop_strings_end_the_output_before_them(smollm2_spec, smollm2):
    data = {**PROMPT, "max_new_tokens": 16}
    _, full = run(smollm2_spec, data)
    stop = full.output.split()[2]
    _, stopped = run(smollm2_spec, {**data, "stop": [stop]})
    assert stopped.output == full.output[: full.output.index(stop)]
    assert stopped.finish_reason == FinishReason.STOP
    assert stopped.metrics.output_tokens < full.metrics.output_tokens


def test_cancel_stops_between_tokens(smollm2_spec, smollm2):
    checks = []

    def should_cancel() -> bool:
        checks.append(1)
        return len(checks) >= 3

    events, result = run(smollm2_spec, {**PROMPT, "max_new_tokens": 64}, should_cancel)
    assert result.finish_reason == FinishReason.CANCELED
    assert result.metrics.output_tokens == 3
    assert "".join(outputs(events)) == result.output


def test_chat_messages_go_through_the_template(smollm2_spec, smollm2):
    data = {
        "messages": [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "max_new_tokens": 8,
        "temperature": 0,
    }
    _, result = run(smollm2_spec, data)
    assert "Paris" in result.output
    template = smollm2.tokenizer.apply_chat_template(
        data["messages"], add_generation_prompt=True, tokenize=False
    )
    assert result.metrics.input_tokens == len(
        smollm2.tokenizer(template, add_special_tokens=False)["input_ids"]
    )


def test_closing_the_stream_early_is_clean(smollm2_spec, smollm2):
    stream = get_runner("text-generation").run(smollm2_spec, {**PROMPT, "max_new_tokens": 64})
    first = next(event for event in stream if event.type == "output")
    stream.close()
    assert first.data


@pytest.mark.parametrize("temperature", [1.5e-109, 1e-40])
def test_a_vanishing_temperature_decodes_greedily(smollm2_spec, smollm2, temperature):
    # Found by fuzzing /v1/completions: logits divided by a temperature that rounds to
    # zero in float32 became inf and NaN, and sampling failed with a 500.
    data = {**PROMPT, "max_new_tokens": 6}
    _, greedy = run(smollm2_spec, data)
    _, tiny = run(smollm2_spec, {**data, "temperature": temperature, "seed": 1})
    assert tiny.output == greedy.output
