from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Organizations and access"

    def ready(self) -> None:
        from portal import hot

        hot.connect()
