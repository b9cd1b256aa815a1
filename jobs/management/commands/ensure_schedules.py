"""Create (or repair) the django-q2 schedules: job retention daily, stale-job sweeper every minute."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from jobs.schedules import ensure_schedules


class Command(BaseCommand):
    help = "Idempotently create the django-q2 schedules for job retention and the stale-job sweeper."

    def handle(self, *args, **options) -> None:
        for name, outcome in ensure_schedules(log_changes=False).items():  # once per schedule, not twice
            self.stdout.write(f"{name}: {outcome}")
