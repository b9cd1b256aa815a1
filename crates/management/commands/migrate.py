"""Django's ``migrate``, one at a time per database.

Two ``migrate`` runs at once on a fresh database (two ``scripts/up``, two containers starting together)
both planned the same migrations and the second failed half-way with 'relation "django_admin_log"
already exists'. A session advisory lock makes the second wait; it then plans after the first has
committed and finds nothing left to do.
"""

from __future__ import annotations

from django.core.management.commands.migrate import Command as DjangoMigrateCommand
from django.db import connections

# Session advisory key held for the whole run ("FDXM").
MIGRATE_LOCK_KEY = 0x4644584D00000001


class Command(DjangoMigrateCommand):
    def handle(self, *args, **options):
        connection = connections[options["database"]]
        if connection.vendor != "postgresql":  # pragma: no cover - Ferrodex runs on PostgreSQL only
            return super().handle(*args, **options)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATE_LOCK_KEY])
            if not cursor.fetchone()[0]:
                self.stderr.write("==> another migrate is running on this database; waiting for it to finish")
                cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATE_LOCK_KEY])
        try:
            return super().handle(*args, **options)
        finally:
            if connection.connection is not None:  # a closed session has let go of the lock already
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATE_LOCK_KEY])
