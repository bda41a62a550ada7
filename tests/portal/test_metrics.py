"""`/metrics`: what the processes record in Redis, rendered for Prometheus."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from billing.checkout import grant_plan
from billing.demo import load_demo_plans
from billing.models import Plan
from inference import lifecycle
from inference.models import Prediction, Status
from models_hub.demo import load_demo_catalog
from portal import metrics
from portal.redis_client import sync_client
from tests.conftest import fresh_window

pytestmark = pytest.mark.django_db
TOKEN = "scrape-" + "x" * 40
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_metrics():
    def clear() -> None:
        metrics.flush()  # what this process recorded before belongs to no test here
        client = sync_client()
        keys = list(client.scan_iter(match=f"{metrics.PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)

    clear()
    yield
    clear()


def sample(text: str, series: str) -> float:
    """The value of one exact series line, e.g. `name{a="b"}`."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match, f"{series} not in:\n{text}"
    return float(match.group(1))


def test_counter_histogram_and_gauge_render_in_the_text_format():
    metrics.inc("portal_predictions_total", {"model": "echo", "status": "succeeded"})
    metrics.inc("portal_predictions_total", {"model": "echo", "status": "succeeded"})
    metrics.observe("portal_prediction_predict_seconds", {"model": 'we"ird'}, 0.3)
    metrics.observe("portal_prediction_predict_seconds", {"model": 'we"ird'}, 700)
    metrics.set_gauge("portal_worker_models_loaded", {"worker": "a:1"}, 2, ttl_seconds=60)
    metrics.set_gauge("portal_worker_models_loaded", {"worker": "dead:2"}, 5, ttl_seconds=-1)
    text = metrics.render()

    assert "# TYPE portal_prediction_predict_seconds histogram" in text
    assert sample(text, 'portal_predictions_total{model="echo",status="succeeded"}') == 2
    hist = 'portal_prediction_predict_seconds_bucket{model="we\\"ird",le="%s"}'
    assert sample(text, hist % "0.25") == 0
    assert sample(text, hist % "0.5") == 1  # buckets are cumulative
    assert sample(text, hist % "600") == 1
    assert sample(text, hist % "+Inf") == 2
    assert sample(text, 'portal_prediction_predict_seconds_sum{model="we\\"ird"}') == 700.3
    assert sample(text, 'portal_worker_models_loaded{worker="a:1"}') == 2
    assert 'worker="dead:2"' not in text  # an expired gauge (a dead process) drops out


@override_settings(DEBUG=False, METRICS_TOKEN=TOKEN)
def test_scraping_needs_the_token_or_staff(client, owner, client_for):
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client_for(owner).get("/metrics").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    staff = get_user_model().objects.create_user("ops", "ops@example.com", "pw", is_staff=True)
    client.force_login(staff)
    assert client.get("/metrics").status_code == 200


@override_settings(DEBUG=False, METRICS_TOKEN="")
def test_no_token_configured_means_no_anonymous_scrape(client):
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_http_latency_is_labelled_by_route_pattern_not_path(org, token_for, api_client):
    api = api_client(token_for(org))
    api.get("/api/v1/predictions/abc123")
    api.get("/api/v1/predictions/def456")
    text = metrics.render()
    series = (
        'portal_http_request_duration_seconds_count{method="GET",'
        'route="/api/v1/predictions/(?P<pk>[a-z0-9]+)$",status="4xx"}'
    )
    assert sample(text, series) == 2
    assert "abc123" not in text


def test_finish_and_claim_record_prediction_metrics(org):
    echo = next(listing for listing in load_demo_catalog() if listing.slug == "echo")
    prediction = Prediction.objects.create(org=org, model=echo, input={"prompt": "a b"})
    claimed = lifecycle.claim(prediction.id, "worker-1")
    lifecycle.finish(
        claimed, Status.SUCCEEDED, output="a b", output_tokens=2, from_status=Status.PROCESSING
    )
    text = metrics.render()
    assert sample(text, 'portal_predictions_total{model="echo",status="succeeded"}') == 1
    assert sample(text, 'portal_tokens_generated_total{model="echo"}') == 2
    assert sample(text, 'portal_prediction_queue_wait_seconds_count{model="echo"}') == 1
    assert sample(text, 'portal_prediction_predict_seconds_count{model="echo"}') == 1


def test_quota_rejections_are_counted(org, token_for, api_client):
    load_demo_catalog()
    load_demo_plans()
    grant_plan(org, Plan.objects.get(slug="pro"), None)  # a team workspace needs a plan
    for plan in Plan.objects.all():
        plan.rate_limit_per_minute = 1
        plan.save()
    api = api_client(token_for(org))
    body = {"model": "echo", "input": {"prompt": "x"}}
    fresh_window()  # both in one fixed window
    first, response = (
        api.post("/api/v1/predictions", body, content_type="application/json") for _ in range(2)
    )
    assert first.status_code != 429, first.content  # the limit allows one a minute
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == "plan_rate_limited"
    assert sample(metrics.render(), 'portal_quota_rejections_total{code="plan_rate_limited"}') == 1


RECORD_IN_A_PROCESS = """
import os, sys, time
import django
django.setup()
from portal import metrics
metrics.inc("portal_webhook_failures_total", {"event": sys.argv[1]})
if sys.argv[2] == "crash":
    time.sleep(1.5)  # the background flush writes it; nothing at exit
    os._exit(0)
"""


def recorded_by(event: str) -> float | None:
    raw = sync_client().hget(f"{metrics.PREFIX}portal_webhook_failures_total", f'event="{event}"')
    return None if raw is None else float(raw)


@pytest.mark.parametrize(("exit_", "flush_seconds"), [("crash", "0.2"), ("exit", "600")])
def test_other_processes_samples_reach_redis_without_a_render(exit_, flush_seconds):
    """Another process's samples (a worker's, a web process's) are written by its
    background flush, or at exit, never only when that process renders."""
    env = {**os.environ, "METRICS_FLUSH_SECONDS": flush_seconds}
    env.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    event = f"subprocess-{exit_}"
    done = subprocess.run(
        [sys.executable, "-c", RECORD_IN_A_PROCESS, event, exit_],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert recorded_by(event) == 1


def test_a_forked_child_never_writes_its_parents_samples_again():
    metrics.inc("portal_webhook_failures_total", {"event": "fork"})
    child = os.fork()
    if child == 0:
        try:
            metrics.inc("portal_webhook_failures_total", {"event": "fork"})
            metrics.flush()
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    metrics.flush()
    assert recorded_by("fork") == 2  # the parent's one and the child's own one
