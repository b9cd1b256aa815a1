import os
from pathlib import Path

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Made here, not by the settings: WhiteNoise warns at every request while the static root is missing.
Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
application = get_wsgi_application()

# Each web worker loads the embedding model now, in the background, not on its first search.
from crates.pipeline.warmup import start_background_load  # noqa: E402 - needs the app registry

start_background_load()
