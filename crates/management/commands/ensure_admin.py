"""Create the first admin user, so a fresh portal can be logged into at once."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create an 'admin' superuser if there is none, and say how to log in."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        password_file = settings.DATA_DIR / "admin_password"
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
