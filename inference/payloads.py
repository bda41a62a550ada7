"""The prediction object as API.md shows it; shared by the API, the streams and webhooks."""

from __future__ import annotations

from django.conf import settings

from billing.costs import cost_of, cost_payload
from inference.models import Prediction


def prediction_urls(prediction_id: str, base_url: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    api = f"{base}/api/v1/predictions/{prediction_id}"
    return {
        "get": api,
        "cancel": f"{api}/cancel",
        "stream": f"{api}/stream",
        "websocket": f"{ws_base}/ws/predictions/{prediction_id}/",
    }


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def prediction_payload(prediction: Prediction, base_url: str | None = None) -> dict:
    return {
        "id": prediction.id,
        "model": prediction.model.slug,
        "version": prediction.version_id,
        "status": prediction.status,
        "input": prediction.input,
        "output": prediction.output,
        "error": prediction.error or None,
        "logs": prediction.logs,
        "metrics": {
            "input_tokens": prediction.input_tokens,
            "output_tokens": prediction.output_tokens,
            "predict_time": prediction.predict_time,
            "queue_time": prediction.queue_time,
        },
        # Null until the prediction is terminal (API.md): the receipt is written as it settles.
        "cost": cost_payload(cost_of(prediction)),
        "source": prediction.source,
        "created_at": _iso(prediction.created_at),
        "started_at": _iso(prediction.started_at),
        "completed_at": _iso(prediction.completed_at),
        "urls": prediction_urls(prediction.id, base_url or settings.SITE_URL),
        # As on Replicate: true once retention erased input, output and logs.
        "data_removed": prediction.data_removed_at is not None,
    }
