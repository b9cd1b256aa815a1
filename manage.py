#!/usr/bin/env python
"""Django's command-line utility for Ferrodex."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if sys.argv[1:2] == ["stop_database"]:  # the settings would start the embedded server only to stop it
        os.environ["FERRODEX_START_EMBEDDED_DB"] = "false"
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
