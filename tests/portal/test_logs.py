"""Structured logs: JSON lines that carry the prediction and org they are about."""

import json
import logging
import sys

import pytest

from inference import execution
from inference.models import Prediction, Status
from models_hub.demo import load_demo_catalog
from portal.logs import ContextFilter, JsonFormatter, prediction_context


def render(record: logging.LogRecord) -> dict:
    ContextFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def make_record(message: str, **extra) -> logging.LogRecord:
    record = logging.LogRecord("inference.x", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_a_line_inside_a_prediction_carries_its_id_and_org():
    with prediction_context("abc123", 7):
        line = render(make_record("loading model"))
    assert line["prediction_id"] == "abc123" and line["org"] == 7
    assert line["level"] == "INFO" and line["message"] == "loading model"
    assert line["ts"].endswith("+00:00")


def test_lines_outside_a_prediction_have_no_ids_and_explicit_extra_wins():
    assert "prediction_id" not in render(make_record("startup"))
    with prediction_context("outer", 1):
        line = render(make_record("x", prediction_id="inner", org=2))
    assert line["prediction_id"] == "inner" and line["org"] == 2


def test_exceptions_are_one_json_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exc_info"]


@pytest.mark.django_db
def test_every_line_a_worker_writes_about_a_prediction_names_it(org, caplog):
    echo = next(listing for listing in load_demo_catalog() if listing.slug == "echo")
    prediction = Prediction.objects.create(org=org, model=echo, input={"prompt": "a b"})
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.DEBUG):
        execution.execute(prediction.id, "worker-1")
    prediction.refresh_from_db()
    assert prediction.status == Status.SUCCEEDED
    ours = [r for r in caplog.records if r.name.startswith(("inference", "billing", "portal"))]
    assert ours, "the run logged nothing"
    assert all(r.prediction_id == prediction.id and r.org == org.pk for r in ours)
