from django.apps import AppConfig
from django.db.models.signals import pre_delete


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Inference"

    def ready(self) -> None:
        # Connects the worker heartbeat to Celery's worker signals.
        from inference import presence  # noqa: F401
        from inference.files import forget_files_of_deleted_org
        from portal.models import Organization

        # Deleting an org cascades to its files' rows; their bytes need telling.
        pre_delete.connect(
            forget_files_of_deleted_org, sender=Organization, dispatch_uid="inference.files"
        )
