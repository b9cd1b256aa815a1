from django.apps import AppConfig


class CratesConfig(AppConfig):
    name = "crates"
    verbose_name = "Crates and documentation"

    def ready(self) -> None:
        from crates import checks  # noqa: F401  (registers system checks)
