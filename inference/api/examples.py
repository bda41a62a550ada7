"""Request and response examples shown in the API reference."""

from drf_spectacular.utils import OpenApiExample

PREDICTION = {
    "id": "q3l8m1v0c2x7k9d4f6h5j0a1",
    "model": "smollm2-135m-instruct",
    "version": "5c7d5dc6dd8b",
    "status": "succeeded",
    "input": {"prompt": "Write a haiku about GPUs.", "max_new_tokens": 32},
    "output": "Silicon rivers\nthousands of small minds at once\nwarm the winter room",
    "error": None,
    "logs": "",
    "metrics": {"input_tokens": 31, "output_tokens": 18, "predict_time": 1.21, "queue_time": 0.02},
    # 31 input tokens at $0.05 and 18 output tokens at $0.10 per 1M, rounded to 6 places.
    "cost": {
        "amount": "0.000003",
        "currency": "usd",
        "billed": {"input_tokens": 31, "output_tokens": 18, "seconds": "1.21", "requests": 1},
        "generated_output_tokens": 18,
        "paid_from": [{"source": "plan", "amount": "0.000003"}],
    },
    "source": "api",
    "created_at": "2026-11-27T12:00:00.000000Z",
    "started_at": "2026-11-27T12:00:00.020000Z",
    "completed_at": "2026-11-27T12:00:01.230000Z",
    "urls": {
        "get": "https://portal.example.com/api/v1/predictions/q3l8m1v0c2x7k9d4f6h5j0a1",
        "cancel": "https://portal.example.com/api/v1/predictions/q3l8m1v0c2x7k9d4f6h5j0a1/cancel",
        "stream": "https://portal.example.com/api/v1/predictions/q3l8m1v0c2x7k9d4f6h5j0a1/stream",
        "websocket": "wss://portal.example.com/ws/predictions/q3l8m1v0c2x7k9d4f6h5j0a1/",
    },
    "data_removed": False,
}

PINNED_REQUEST = OpenApiExample(
    "Pin a version",
    request_only=True,
    value={
        "model": "smollm2-135m-instruct:5c7d5dc6dd8b",
        "input": {"prompt": "Write a haiku about GPUs.", "max_new_tokens": 32},
    },
)
CREATE_REQUEST = OpenApiExample(
    "Generate text",
    request_only=True,
    value={
        "model": "smollm2-135m-instruct",
        "input": {"prompt": "Write a haiku about GPUs.", "max_new_tokens": 32},
        "webhook": "https://example.com/hooks/portal",
        "webhook_events_filter": ["completed"],
    },
)
CREATED = OpenApiExample(
    "Queued",
    response_only=True,
    status_codes=["201"],
    value={
        **PREDICTION,
        "status": "starting",
        "output": None,
        "cost": None,
        "completed_at": None,
    },
)
FINISHED = OpenApiExample("Finished", response_only=True, value=PREDICTION)
CANCELED = OpenApiExample(
    "Canceled", response_only=True, value={**PREDICTION, "status": "canceled"}
)
LIST = OpenApiExample(
    "Newest first",
    response_only=True,
    value={"count": 1, "next": None, "previous": None, "results": [PREDICTION]},
)


QUOTE = OpenApiExample(
    "Quote",
    response_only=True,
    value={"currency": "usd", "max_cost": "0.000412", "expected_cost": "0.000187"},
)


FILE = OpenApiExample(
    "An uploaded image",
    response_only=True,
    value={
        "id": "f7k2m9q4x1c8v3b6n5z0l2p4",
        "content_type": "image/png",
        "size": 48213,
        "width": 640,
        "height": 480,
        "created_at": "2026-11-27T12:00:00.000000Z",
        "expires_at": "2026-11-28T12:00:00.000000Z",
    },
)
OCR_REQUEST = OpenApiExample(
    "Read the text in an image",
    request_only=True,
    value={"model": "rapidocr-pp-ocrv4", "input": {"image": "file:f7k2m9q4x1c8v3b6n5z0l2p4"}},
)
FACES_REQUEST = OpenApiExample(
    "Find faces (an inline image)",
    request_only=True,
    value={
        "model": "mtcnn-face-detection",
        "input": {"image": "data:image/jpeg;base64,/9j/4AAQSkZJRg...", "min_score": 0.9},
    },
)
FILE_NOT_FOUND = OpenApiExample(
    "Not found",
    response_only=True,
    status_codes=["404"],
    value={
        "error": {
            "type": "not_found_error",
            "code": "not_found",
            "message": "Not found.",
            "param": None,
        }
    },
)
