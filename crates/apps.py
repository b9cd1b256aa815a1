from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _search_session_settings(sender, connection, **kwargs) -> None:
    if connection.vendor != "postgresql":
        return
    from crates.search.signals import session_settings_sql

    with connection.cursor() as cursor:
        cursor.execute(session_settings_sql())


class CratesConfig(AppConfig):
    name = "crates"
    verbose_name = "Crates and documentation"

    def ready(self) -> None:
        from crates import checks  # noqa: F401  (registers system checks)

        connection_created.connect(_search_session_settings, dispatch_uid="ferrodex-search-session-settings")
