from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Inference"

    def ready(self) -> None:
        # Connects the worker heartbeat to Celery's worker signals.
        from inference import presence  # noqa: F401
