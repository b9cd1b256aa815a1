from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django_q.signals import post_spawn

        from jobs.priority import on_connection_created
        from jobs.runner import on_worker_spawn

        # A no-op except in a niced qcluster worker, whose new sessions get a niced backend.
        connection_created.connect(on_connection_created, dispatch_uid="ferrodex-worker-backend-priority")

        # Fires only inside qcluster worker processes: heartbeat + sweeper thread there, nowhere else.
        post_spawn.connect(on_worker_spawn, dispatch_uid="ferrodex-worker-monitor")
