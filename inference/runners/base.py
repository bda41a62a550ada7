"""What every runner shares: the events it yields and the interface the pipeline calls.

A runner turns validated input into a stream of events: `output` (a text delta, for
generation), `log` (a line for the prediction's logs) and exactly one final `result`
(the whole output, its metrics and why it stopped). The pipeline consumes the generator
in the worker and appends each event to the prediction's event log; it may stop early by
returning True from `should_cancel` (checked between tokens) or by closing the generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

from inference.spec import ModelSpec

CancelCheck = Callable[[], bool]


def never_cancel() -> bool:
    return False


class EventType(StrEnum):
    OUTPUT = "output"
    LOG = "log"
    RESULT = "result"


class FinishReason(StrEnum):
    STOP = "stop"  # end of sequence or a stop string
    LENGTH = "length"  # max_new_tokens (or the context) ran out
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class Metrics:
    input_tokens: int
    output_tokens: int
    predict_time: float
    time_to_first_token: float | None = None

    @property
    def tokens_per_second(self) -> float | None:
        if not self.output_tokens or not self.predict_time:
            return None
        return self.output_tokens / self.predict_time

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_second": self.tokens_per_second}


@dataclass(frozen=True, slots=True)
class Result:
    output: Any
    metrics: Metrics
    finish_reason: FinishReason = FinishReason.STOP

    def as_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "metrics": self.metrics.as_dict(),
            "finish_reason": str(self.finish_reason),
        }


@dataclass(frozen=True, slots=True)
class Event:
    """`data` is a str for `output` and `log`, a `Result` for `result`. `tokens` is how
    many generated tokens an `output` delta carries (what it bills when delivered)."""

    type: EventType
    data: str | Result
    tokens: int = 0

    @classmethod
    def output(cls, delta: str, tokens: int = 1) -> Event:
        return cls(EventType.OUTPUT, delta, tokens)

    @classmethod
    def log(cls, line: str) -> Event:
        return cls(EventType.LOG, line)

    @classmethod
    def result(cls, result: Result) -> Event:
        return cls(EventType.RESULT, result)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the event log."""
        data = self.data.as_dict() if isinstance(self.data, Result) else self.data
        return {"type": str(self.type), "data": data}


class Runner(Protocol):
    task: str

    def run(
        self, spec: ModelSpec, data: dict[str, Any], should_cancel: CancelCheck = never_cancel
    ) -> Iterator[Event]:
        """Yields events for one prediction, ending with one `result` event."""
