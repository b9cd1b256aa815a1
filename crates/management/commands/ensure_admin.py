"""Create the first admin user, so a fresh portal can be logged into at once."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import connection, transaction

# Transaction-level advisory key: one ensure_admin at a time ("FDXA").
ENSURE_ADMIN_LOCK_KEY = 0x4644584100000001


class Command(BaseCommand):
    help = "Create an 'admin' superuser if there is none, and say how to log in."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        password_file = settings.DATA_DIR / "admin_password"
        # Two scripts/up at once: the second waits here, then finds the first one's admin (it failed with an
        # IntegrityError traceback on auth_user_username_key, and scripts/up stopped).
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ENSURE_ADMIN_LOCK_KEY])
            if User.objects.filter(is_superuser=True).exists():
                hint = f" (initial password in {password_file})" if password_file.exists() else ""
                self.stderr.write(f"==> admin login: an existing superuser{hint}")
                return
            username = os.environ.get("FERRODEX_ADMIN_USER", "admin")
            password = os.environ.get("FERRODEX_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        self.stderr.write(f"==> admin login: user '{username}', password '{password}' (saved in {password_file})")
