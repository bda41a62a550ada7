from django.apps import AppConfig


class ModelsHubConfig(AppConfig):
    name = "models_hub"
    verbose_name = "Model catalog"

    def ready(self) -> None:
        from models_hub import hot

        hot.connect()
