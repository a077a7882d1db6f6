"""The one settings module. Everything comes from the environment (12-factor) with local defaults.

MLOPS_ENV picks the few behaviours that differ: `production` (the default, so a forgotten variable
fails closed), `development` (`make run`) and `test` (`make test`).
"""

import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


MLOPS_ENV = env_str("MLOPS_ENV", "production")
if MLOPS_ENV not in ("production", "development", "test"):
    raise ImproperlyConfigured(f"MLOPS_ENV must be production, development or test, not {MLOPS_ENV!r}")
IS_PRODUCTION = MLOPS_ENV == "production"

DEBUG = env_bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or ("" if IS_PRODUCTION else "insecure-local-only-key")
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production")
ALLOWED_HOSTS = (env_str("DJANGO_ALLOWED_HOSTS", "*")).split(",")
DATA_DIR = Path(env_str("MLOPS_DATA_DIR", str(BASE_DIR / ".data")))

# --- Applications: the public schema holds tenants; every domain app lives in each tenant's schema.
SHARED_APPS = [
    "django_tenants",
    "django.contrib.contenttypes",
    "django.contrib.postgres",
    "tenancy",
    "rest_framework",
    "drf_spectacular",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "jobs",
    "projects",
    "datasets",
    "slices",
    "training",
    "predictions",
    "search",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]
TENANT_MODEL = "tenancy.Tenant"

MIDDLEWARE = [
    "mlops.observability.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "tenancy.middleware.TenantFromTokenMiddleware",
    "mlops.db_routing.ReadYourWritesMiddleware",
]
ROOT_URLCONF = "mlops.urls"
WSGI_APPLICATION = "mlops.wsgi.application"
ASGI_APPLICATION = "mlops.asgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
}]
STATIC_URL = "static/"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Databases: Aurora's writer and reader endpoints; both follow the tenant's schema.
WRITER_DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:54329/mlops")
READER_DATABASE_URL = env_str("DATABASE_READER_URL", WRITER_DATABASE_URL)


# The ASGI server runs each request's sync code in a thread of its own (Django's ThreadSensitiveContext), and
# Django's connections belong to a thread: persistent connections (CONN_MAX_AGE) are never reused there, and every
# request would open a writer and a reader connection (~20 ms on loopback). mlops/asgi.py turns DATABASE_POOL on,
# so web processes take connections from a psycopg pool per process and alias instead; workers and management
# commands keep one persistent connection per thread.
DATABASE_POOL = env_bool("DATABASE_POOL", False)


def _database(url: str, *, options: dict, **overrides) -> dict:
    if DATABASE_POOL:
        # Django refuses a pool with persistent connections; with health checks on, the pool checks a connection
        # at each checkout (one round trip), so one that outlived its server is replaced, not used.
        config = dj_database_url.parse(url, conn_max_age=0, conn_health_checks=True)
        options = {**options, "pool": {"min_size": env_int("DATABASE_POOL_MIN_SIZE", 2),
                                       "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20),
                                       "timeout": max(options["connect_timeout"], 1)}}
    else:
        config = dj_database_url.parse(url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
                                       conn_health_checks=True)
    config["ENGINE"] = "django_tenants.postgresql_backend"
    return {**config, "OPTIONS": options, **overrides}


DATABASES = {
    "default": _database(WRITER_DATABASE_URL, options={"connect_timeout": 5}),
    # A dead reader must cost one short connect, not a hung request.
    "reader": _database(
        READER_DATABASE_URL,
        # tcp_user_timeout (ms) bounds a reused connection to a replica that stopped answering mid-query.
        options={"connect_timeout": env_int("DATABASE_READER_CONNECT_TIMEOUT", 1),
                 "tcp_user_timeout": env_int("DATABASE_READER_TCP_USER_TIMEOUT_MS", 10_000)},
        TEST={"MIRROR": "default"},
    ),
}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter", "mlops.db_routing.ReadWriteRouter"]
EXTRA_SET_TENANT_METHOD_PATH = "mlops.db_routing.follow_tenant_on_reader"
# `SET search_path` once per connection and tenant instead of before every statement (half the statements of a
# search). django-tenants forgets the path it set on set_tenant() (every request, tenant_scope() in tasks and
# websocket handlers, and on the reader through follow_tenant_on_reader), on close() and after a rollback or a
# rollback to a savepoint (which undo a SET), so a connection never keeps a stale tenant. Raw `SET search_path`
# on Django's connections would bypass that: the import's COPY uses its own psycopg connection.
TENANT_LIMIT_SET_CALLS = True
# After a write, the same user reads from the writer this long (longer than Aurora's replica lag).
READ_YOUR_WRITES_SECONDS = env_float("READ_YOUR_WRITES_SECONDS", 5.0)
# A reader that failed to connect is skipped this long before it is tried again.
READER_DOWN_SECONDS = env_float("READER_DOWN_SECONDS", 30.0)

# --- Redis: cache, channel layer and Celery broker. Every key that holds tenant data carries the tenant.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:63790/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "mlops",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2,
                    "pool_class": "mlops.redis_pool.ProcessConnectionPool"},
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 times reads out after 5 s by default, as long as channels_redis blocks waiting for a message,
        # so every websocket quiet for 5 s crashed: read longer than that wait, connect quickly.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 2}],
                   "prefix": "mlops:channels"},
    }
}

# --- Celery
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
# Training and inference need torch (and a GPU where there is one): their tasks go to a queue only training
# workers consume (`celery worker -Q training`), so the default workers stay small and GPU hosts serve only them.
TRAINING_QUEUE = env_str("TRAINING_QUEUE", "training")
CELERY_TASK_ROUTES = {
    "training.tasks.*": {"queue": TRAINING_QUEUE},
    "predictions.tasks.prediction_run_execute_task": {"queue": TRAINING_QUEUE},
}
# A running job whose heartbeat is older than this is failed by the reaper (worker lost).
JOB_HEARTBEAT_SECONDS = env_float("JOB_HEARTBEAT_SECONDS", 5.0)
JOB_STALE_AFTER_SECONDS = env_float("JOB_STALE_AFTER_SECONDS", 60.0)
JOB_REAPER_INTERVAL_SECONDS = env_float("JOB_REAPER_INTERVAL_SECONDS", 15.0)
JOB_PROGRESS_MIN_INTERVAL_SECONDS = env_float("JOB_PROGRESS_MIN_INTERVAL_SECONDS", 0.25)
# A lost worker's job is failed at most JOB_STALE_AFTER_SECONDS + JOB_REAPER_INTERVAL_SECONDS after it died.
# A queued job no worker has claimed this long after its message was sent gets its message again (the message may be
# lost); the wait doubles after each re-send (jobs.services.job_resend_lost).
JOB_RESEND_AFTER_SECONDS = env_float("JOB_RESEND_AFTER_SECONDS", 300.0)
CELERY_BEAT_SCHEDULE = {
    "jobs-reap-stale": {
        "task": "jobs.reap_stale_jobs",
        "schedule": JOB_REAPER_INTERVAL_SECONDS,
        # Sweeps queued while no worker ran are worthless once the next one is due.
        "options": {"expires": JOB_REAPER_INTERVAL_SECONDS},
    },
}

# --- Authentication: Auth0 JWTs, then the platform's token introspection (RFC 7662 style).
JWT_ISSUER = env_str("JWT_ISSUER")
JWT_AUDIENCE = env_str("JWT_AUDIENCE", "mlops-api")
JWT_JWKS_URL = env_str("JWT_JWKS_URL")
JWKS_CACHE_SECONDS = env_int("JWKS_CACHE_SECONDS", 600)
PLATFORM_URL = env_str("PLATFORM_URL")
PLATFORM_CLIENT_ID = env_str("PLATFORM_CLIENT_ID", "mlops")
PLATFORM_CLIENT_SECRET = env_str("PLATFORM_CLIENT_SECRET", "")
# The platform provisions tenants with this key (sent as a bearer token to /api/v1/platform/...).
PLATFORM_SERVICE_KEY = env_str("PLATFORM_SERVICE_KEY", "")
PLATFORM_TIMEOUT_SECONDS = env_float("PLATFORM_TIMEOUT_SECONDS", 3.0)
INTROSPECTION_CACHE_SECONDS = env_int("INTROSPECTION_CACHE_SECONDS", 60)
# Where this deployment keeps tenant data; the platform's connection info must name it.
DATABASE_CLUSTER = env_str("DATABASE_CLUSTER", "main")
# Development issuer and platform, built in; production refuses them.
DEV_AUTH = env_bool("MLOPS_DEV_AUTH", False)
DEV_JWT_KEY_PATH = DATA_DIR / "dev-jwt-key.pem"
if DEV_AUTH:
    if IS_PRODUCTION:
        raise ImproperlyConfigured("MLOPS_DEV_AUTH cannot be enabled when MLOPS_ENV=production")
    JWT_ISSUER = JWT_ISSUER or "https://mlops.local/dev-issuer/"
elif IS_PRODUCTION:
    missing = [name for name, value in (
        ("PLATFORM_URL", PLATFORM_URL), ("JWT_ISSUER", JWT_ISSUER), ("JWT_JWKS_URL", JWT_JWKS_URL),
        ("PLATFORM_SERVICE_KEY", PLATFORM_SERVICE_KEY),
    ) if not value]
    if missing:
        raise ImproperlyConfigured(f"missing required settings in production: {', '.join(missing)}")

# --- Storage: what we write goes under STORAGE_ROOT/<tenant>.
STORAGE_ROOT = Path(env_str("MLOPS_STORAGE_ROOT", str(DATA_DIR / "storage")))
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL")

# --- Per-tenant sources: a tenant reads local files only under LOCAL_READ_ROOT/<schema>/ (made when the tenant is
# provisioned), and s3:// objects only under the buckets or prefixes listed for it here: a JSON object
# {"<schema>": ["s3://bucket/prefix/", ...]}. Unlisted, a tenant reads no S3 at all (the service's one set of AWS
# credentials would otherwise let any tenant name any bucket they reach).
LOCAL_READ_ROOT = Path(env_str("MLOPS_LOCAL_READ_ROOT", str(DATA_DIR / "imports")))
TENANT_S3_PREFIXES = json.loads(env_str("TENANT_S3_PREFIXES", "{}"))
if not (isinstance(TENANT_S3_PREFIXES, dict) and all(
        isinstance(prefixes, list) and all(isinstance(p, str) and p.startswith("s3://") for p in prefixes)
        for prefixes in TENANT_S3_PREFIXES.values())):
    raise ImproperlyConfigured('TENANT_S3_PREFIXES must be a JSON object {"<schema>": ["s3://bucket/prefix/", ...]}')

# Lines per import batch: each is staged, checked and merged in SQL (and committed, when bad lines are skipped).
IMPORT_BATCH_LINES = env_int("IMPORT_BATCH_LINES", 20_000)

# --- Search: the engine ("postgres", the embedded default, or "elasticsearch") and where Elasticsearch is.
SEARCH_ENGINE = env_str("SEARCH_ENGINE", "postgres")
ELASTICSEARCH_URL = env_str("ELASTICSEARCH_URL")
# A tenant whose record names another database cluster (Tenant.database) may have its own Elasticsearch:
# a JSON object {"<cluster>": "<url>"}; a tenant whose cluster is not listed uses ELASTICSEARCH_URL.
ELASTICSEARCH_CLUSTER_URLS = json.loads(env_str("ELASTICSEARCH_CLUSTER_URLS", "{}"))
ELASTICSEARCH_TIMEOUT_SECONDS = env_float("ELASTICSEARCH_TIMEOUT_SECONDS", 10)
# Datarows per bulk request (and per indexing task for changes).
SEARCH_INDEX_BATCH = env_int("SEARCH_INDEX_BATCH", 1000)
# work_mem of the PostgreSQL engine's capped statements (count=estimate): their bitmaps hold every row an index
# yields (half a million for a common word at 10M rows), and at PostgreSQL's default 4MB they turn lossy, so every
# row of a lossy page is rechecked. Bounded by the cap of those statements' output, not by the table.
SEARCH_ESTIMATE_WORK_MEM = env_str("SEARCH_ESTIMATE_WORK_MEM", "64MB")
# random_page_cost of the same statements. Their LIMIT makes the planner weigh the cost of reaching the first 10,001
# matches, and at PostgreSQL's default 4 (a spinning disk's) an index walk in datarow order that stops early loses
# to hashing every datarow id: at 10M rows the same-object estimate took 5.6 s that way and 67 ms with 1.1, the usual
# value where data is cached or on SSD (Aurora's storage).
SEARCH_ESTIMATE_RANDOM_PAGE_COST = env_float("SEARCH_ESTIMATE_RANDOM_PAGE_COST", 1.1)
# Exact label and prediction class facets run on sessions of their own, at the same time as the total and the other
# facets, on one exported snapshot (search/engines/snapshot_sessions.py): a faceted search then holds one database
# connection more per object facet while it runs. Off: one statement on one connection.
SEARCH_PARALLEL_FACETS = env_bool("SEARCH_PARALLEL_FACETS", True)
if SEARCH_ENGINE not in ("postgres", "elasticsearch"):
    raise ImproperlyConfigured(f"SEARCH_ENGINE must be postgres or elasticsearch, not {SEARCH_ENGINE!r}")
if SEARCH_ENGINE == "elasticsearch" and not ELASTICSEARCH_URL:
    raise ImproperlyConfigured("SEARCH_ENGINE=elasticsearch needs ELASTICSEARCH_URL")

# --- REST API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenancy.authentication.PlatformPrincipalAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tenancy.permissions.HasWorkspaceRole"],
    "DEFAULT_PAGINATION_CLASS": "mlops.pagination.CreatedCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "mlops.exception_handler.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "mlops API",
    "DESCRIPTION": "Projects, datasets, search, slices, training and predictions for computer-vision teams.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

# --- Observability
SENTRY_DSN = env_str("SENTRY_DSN")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "mlops.observability.LogContextFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}, "httpx": {"level": "WARNING"}},
}
if SENTRY_DSN:
    import sentry_sdk

    sentry_sdk.init(dsn=SENTRY_DSN, environment=MLOPS_ENV, send_default_pii=False,
                    traces_sample_rate=env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0))
