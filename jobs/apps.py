from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from jobs.recovery import on_worker_spawn

        # Fires only inside qcluster worker processes: heartbeat + sweeper thread there, nowhere else.
        post_spawn.connect(on_worker_spawn, dispatch_uid="ferrodex-worker-monitor")
