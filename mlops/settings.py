"""The one settings module. Everything comes from the environment (12-factor) with local defaults.

MLOPS_ENV picks the few behaviours that differ: `production` (the default, so a forgotten variable
fails closed), `development` (`make run`) and `test` (`make test`).
"""

import ipaddress
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
DATA_DIR = Path(env_str("MLOPS_DATA_DIR", str(BASE_DIR / ".data")))

# --- Applications: the public schema holds tenants; every domain app lives in each tenant's schema.
SHARED_APPS = [
    "django_tenants",
    "django.contrib.contenttypes",
    "django.contrib.postgres",
    "tenancy",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django.contrib.staticfiles",
    "corsheaders",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "jobs",
    "projects",
    "datasets",
    "slices",
    "training",
    "predictions",
    "evaluations",
    "search",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]
TENANT_MODEL = "tenancy.Tenant"

MIDDLEWARE = [
    # First: it counts and times every answer, those of the middleware below included.
    "mlops.metrics.RequestMetricsMiddleware",
    "mlops.observability.RequestContextMiddleware",
    "mlops.health.HealthProbeMiddleware",
    # Before anything that answers: a preflight carries no token, and every answer needs the CORS headers.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The API docs' own Swagger UI and Redoc files (drf-spectacular-sidecar), served by every process, DEBUG or not.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "tenancy.middleware.TenantFromTokenMiddleware",
    "mlops.db_routing.ReadYourWritesMiddleware",
]
ROOT_URLCONF = "mlops.urls"
WSGI_APPLICATION = "mlops.wsgi.application"
ASGI_APPLICATION = "mlops.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "mlops" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
STATIC_URL = "static/"
# WhiteNoise serves the apps' static files (the docs' UI) from where they are installed: no collectstatic step.
WHITENOISE_USE_FINDERS = True
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- HTTP security: hosts, headers, cookies and CORS. TLS ends at the load balancer, so production trusts the scheme
# it forwards and redirects plain HTTP, except the probes, which call the process directly.
# The Host names this API answers to; production must name them (required below), so a forged Host gets a 400.
ALLOWED_HOSTS = [
    host.strip() for host in env_str("DJANGO_ALLOWED_HOSTS", "" if IS_PRODUCTION else "*").split(",") if host.strip()
]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The header and value the load balancer sets on requests it received over HTTPS ("off" where the process ends TLS).
_proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto: https")
SECURE_PROXY_SSL_HEADER = (
    None
    if _proxy_ssl_header.lower() == "off"
    else (
        "HTTP_" + _proxy_ssl_header.split(":")[0].strip().upper().replace("-", "_"),
        _proxy_ssl_header.split(":", 1)[-1].strip(),
    )
)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", IS_PRODUCTION)
# Browsers keep to HTTPS this long once they have seen it; 0 (no header) outside production, where it is plain HTTP.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if IS_PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = IS_PRODUCTION
# The frontend's origins (comma-separated "https://app.example.com"); none by default. Only the API answers them, with
# the bearer token (no cookies: credentials stay off) and the request id the frontend quotes in a bug report.
CORS_ALLOWED_ORIGINS = [
    origin.strip() for origin in (env_str("CORS_ALLOWED_ORIGINS", "") or "").split(",") if origin.strip()
]
CORS_URLS_REGEX = r"^/api/"
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "x-request-id"]
CORS_EXPOSE_HEADERS = ["X-Request-ID"]
SILENCED_SYSTEM_CHECKS = [
    # CSRF middleware: no cookie or session authenticates a request, only a bearer token a foreign page cannot send.
    "security.W003",
    # Preload puts the whole domain on browsers' built-in HTTPS list, a decision for its owner: SECURE_HSTS_PRELOAD=1.
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]

# --- Databases: Aurora's writer and reader endpoints; both follow the tenant's schema.
WRITER_DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:54329/mlops")
READER_DATABASE_URL = env_str("DATABASE_READER_URL", WRITER_DATABASE_URL)


# The ASGI server runs each request's sync code in a thread of its own (Django's ThreadSensitiveContext), and
# Django's connections belong to a thread: persistent connections (CONN_MAX_AGE) are never reused there, and every
# request would open a writer and a reader connection. mlops/asgi.py turns DATABASE_POOL on,
# so web processes take connections from a psycopg pool per process and alias instead; workers and management
# commands keep one persistent connection per thread.
DATABASE_POOL = env_bool("DATABASE_POOL", False)
# Every statement of a web process (the pooled connections' startup option; workers and migrations keep no limit).
REQUEST_STATEMENT_TIMEOUT_MS = env_int("REQUEST_STATEMENT_TIMEOUT_MS", 30_000)


def _database(url: str, *, options: dict, **overrides) -> dict:
    if DATABASE_POOL:
        # Django refuses a pool with persistent connections; with health checks on, the pool checks a connection
        # at each checkout (one round trip), so one that outlived its server is replaced, not used.
        config = dj_database_url.parse(url, conn_max_age=0, conn_health_checks=True)
        options = {
            **options,
            "options": f"-c statement_timeout={REQUEST_STATEMENT_TIMEOUT_MS}",
            "pool": {
                "min_size": env_int("DATABASE_POOL_MIN_SIZE", 2),
                "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20),
                "timeout": max(options["connect_timeout"], 1),
            },
        }
    else:
        config = dj_database_url.parse(url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60), conn_health_checks=True)
    config["ENGINE"] = "django_tenants.postgresql_backend"
    return {**config, "OPTIONS": options, **overrides}


DATABASES = {
    "default": _database(WRITER_DATABASE_URL, options={"connect_timeout": 5}),
    # A dead reader must cost one short connect, not a hung request.
    "reader": _database(
        READER_DATABASE_URL,
        # tcp_user_timeout (ms) bounds a reused connection to a replica that stopped answering mid-query.
        options={
            "connect_timeout": env_int("DATABASE_READER_CONNECT_TIMEOUT", 1),
            "tcp_user_timeout": env_int("DATABASE_READER_TCP_USER_TIMEOUT_MS", 10_000),
        },
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
# A request that found every pooled connection in use for the pool's wait is answered 503 with this Retry-After.
DATABASE_BUSY_RETRY_AFTER_SECONDS = env_int("DATABASE_BUSY_RETRY_AFTER_SECONDS", 1)

# --- Reads that agree with the jobs' news (mlops.db_routing.tenant_reads_see_writer).
# A tenant's requests read from the reader only once it replayed what the tenant's jobs announced (and its
# provisioning created); a read waits this long for a lagging reader, then goes to the writer.
READER_CATCH_UP_WAIT_SECONDS = env_float("READER_CATCH_UP_WAIT_SECONDS", 0.05)
# How long a tenant's recorded writer position is kept: far longer than any healthy replica's lag.
TENANT_WRITER_POSITION_SECONDS = env_float("TENANT_WRITER_POSITION_SECONDS", 300.0)

# --- Redis: cache, channel layer and Celery broker. Every key that holds tenant data carries the tenant.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:63790/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "mlops",
        "OPTIONS": {
            "socket_connect_timeout": 2,
            "socket_timeout": 2,
            "pool_class": "mlops.redis_pool.ProcessConnectionPool",
        },
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 times reads out after 5 s by default, as long as channels_redis blocks waiting for a message,
        # so every websocket quiet for 5 s crashed: read longer than that wait, connect quickly.
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 2}],
            "prefix": "mlops:channels",
        },
    }
}

# --- Metrics (Prometheus; mlops/metrics.py): each endpoint on a port of its own, never the API's; 0 serves none. Off by
# default under tests, where many servers and workers run side by side.
# The web's /metrics: the gunicorn master's (the sum of its workers), or `make run`'s uvicorn process's own.
METRICS_PORT = env_int("METRICS_PORT", 0 if MLOPS_ENV == "test" else 9100)
# Each Celery worker's; a second worker on one host names its own with `celery worker --metrics-port N`.
METRICS_WORKER_PORT = env_int("METRICS_WORKER_PORT", 0 if MLOPS_ENV == "test" else 9101)
# Loopback unless told: the series name tenants. Containers set 0.0.0.0 for Prometheus on the compose network.
METRICS_ADDRESS = env_str("METRICS_ADDRESS", "127.0.0.1")
# A tenant label on job, import, training and 429 series: one series per tenant, so off where tenants are too many.
METRICS_TENANT_LABEL = env_bool("METRICS_TENANT_LABEL", True)
# Queue depth and queued jobs are read at scrape time at most this often, each statement under the timeout.
METRICS_QUEUE_CACHE_SECONDS = env_float("METRICS_QUEUE_CACHE_SECONDS", 10.0)
METRICS_QUEUE_STATEMENT_TIMEOUT_MS = env_int("METRICS_QUEUE_STATEMENT_TIMEOUT_MS", 2_000)

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

# --- Job limits: how long a job may run, and how many jobs of one tenant run at once on a queue.
# Seconds a job of each kind may run (Celery's soft time limit): past it the job stops and ends failed, saying so.
# JOB_TIME_LIMITS (a JSON object {"<kind>": seconds}) overrides kinds one by one; an unlisted kind gets the default.
JOB_TIME_LIMITS = {
    "count": 600,
    "dataset-import": 4 * 3600,
    "dataset-export": 2 * 3600,
    "dataset-delete": 3600,
    "search-reindex": 4 * 3600,
    "search-bulk-action": 3600,
    "slice-freeze": 3600,
    "training-run": 24 * 3600,
    "prediction-run": 6 * 3600,
    "evaluation-run": 3600,
    **json.loads(env_str("JOB_TIME_LIMITS", "{}")),
}
JOB_TIME_LIMIT_DEFAULT_SECONDS = env_float("JOB_TIME_LIMIT_DEFAULT_SECONDS", 3600.0)
# A job that does not stop at its soft limit (stuck in C code) has its worker process killed this long after it
# (Celery's hard time limit); the reaper then fails it (jobs.services.job_fail_stale).
JOB_HARD_TIME_LIMIT_GRACE_SECONDS = env_float("JOB_HARD_TIME_LIMIT_GRACE_SECONDS", 60.0)
# Running jobs one tenant may have on one queue; the rest stay queued, their message sent again every
# JOB_WAIT_TURN_SECONDS, so they hold no worker and other tenants' jobs go first. JOB_MAX_RUNNING_PER_TENANT_BY_QUEUE
# (a JSON object {"<queue>": n}) overrides queues one by one (e.g. {"training": 1} where GPUs are few).
JOB_MAX_RUNNING_PER_TENANT = env_int("JOB_MAX_RUNNING_PER_TENANT", 2)
JOB_MAX_RUNNING_PER_TENANT_BY_QUEUE = json.loads(env_str("JOB_MAX_RUNNING_PER_TENANT_BY_QUEUE", "{}"))
JOB_WAIT_TURN_SECONDS = env_float("JOB_WAIT_TURN_SECONDS", 5.0)
for _name, _limits in (
    ("JOB_TIME_LIMITS", JOB_TIME_LIMITS),
    ("JOB_MAX_RUNNING_PER_TENANT_BY_QUEUE", JOB_MAX_RUNNING_PER_TENANT_BY_QUEUE),
):
    if not isinstance(_limits, dict) or not all(
        isinstance(value, int | float) and not isinstance(value, bool) and value > 0 for value in _limits.values()
    ):
        raise ImproperlyConfigured(f"{_name} must be a JSON object of positive numbers, not {_limits!r}")
if JOB_MAX_RUNNING_PER_TENANT < 1:
    raise ImproperlyConfigured("JOB_MAX_RUNNING_PER_TENANT must be at least 1")

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
    missing = [
        name
        for name, value in (
            ("PLATFORM_URL", PLATFORM_URL),
            ("JWT_ISSUER", JWT_ISSUER),
            ("JWT_JWKS_URL", JWT_JWKS_URL),
            ("PLATFORM_SERVICE_KEY", PLATFORM_SERVICE_KEY),
            ("DJANGO_ALLOWED_HOSTS", ALLOWED_HOSTS),
        )
        if not value
    ]
    if missing:
        raise ImproperlyConfigured(f"missing required settings in production: {', '.join(missing)}")

# --- Storage: what we write goes under STORAGE_ROOT/<tenant>.
STORAGE_ROOT = Path(env_str("MLOPS_STORAGE_ROOT", str(DATA_DIR / "storage")))
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL")

# --- Outbound fetches of user-given http(s) URIs (mlops/outbound.py): loopback, private, link-local, metadata and
# reserved addresses are refused. Comma-separated CIDRs or addresses this deployment may fetch from anyway (an
# internal file server); a typo fails at start.
try:
    OUTBOUND_ALLOWED_NETWORKS = [
        ipaddress.ip_network(network.strip(), strict=False)
        for network in env_str("OUTBOUND_ALLOWED_NETWORKS", "").split(",")
        if network.strip()
    ]
except ValueError as error:
    raise ImproperlyConfigured(f"OUTBOUND_ALLOWED_NETWORKS: {error}") from None
# Redirect hops followed (each one checked like the first) before the fetch is refused.
OUTBOUND_MAX_REDIRECTS = env_int("OUTBOUND_MAX_REDIRECTS", 5)
# Largest body read (decoded): a manifest of some 20 million lines; larger sources belong in S3.
OUTBOUND_MAX_BYTES = env_int("OUTBOUND_MAX_BYTES", 4 * 1024**3)
OUTBOUND_CONNECT_TIMEOUT_SECONDS = env_float("OUTBOUND_CONNECT_TIMEOUT_SECONDS", 10)
# Longest wait for any one read; the deadline bounds the whole fetch, a slow import of a large manifest included.
OUTBOUND_READ_TIMEOUT_SECONDS = env_float("OUTBOUND_READ_TIMEOUT_SECONDS", 30)
OUTBOUND_DEADLINE_SECONDS = env_float("OUTBOUND_DEADLINE_SECONDS", 3600)
# CA bundle for https fetches (an internal CA for an allowed internal host); default certifi's, as httpx's.
OUTBOUND_CA_BUNDLE = env_str("OUTBOUND_CA_BUNDLE")
# --- Per-tenant sources: a tenant reads local files only under LOCAL_READ_ROOT/<schema>/ (made when the tenant is
# provisioned), and s3:// objects only under the buckets or prefixes listed for it here: a JSON object
# {"<schema>": ["s3://bucket/prefix/", ...]}. Unlisted, a tenant reads no S3 at all (the service's one set of AWS
# credentials would otherwise let any tenant name any bucket they reach).
LOCAL_READ_ROOT = Path(env_str("MLOPS_LOCAL_READ_ROOT", str(DATA_DIR / "imports")))
TENANT_S3_PREFIXES = json.loads(env_str("TENANT_S3_PREFIXES", "{}"))
if not (
    isinstance(TENANT_S3_PREFIXES, dict)
    and all(
        isinstance(prefixes, list) and all(isinstance(p, str) and p.startswith("s3://") for p in prefixes)
        for prefixes in TENANT_S3_PREFIXES.values()
    )
):
    raise ImproperlyConfigured('TENANT_S3_PREFIXES must be a JSON object {"<schema>": ["s3://bucket/prefix/", ...]}')

# Lines per import batch: each is staged, checked and merged in SQL (and committed, when bad lines are skipped).
IMPORT_BATCH_LINES = env_int("IMPORT_BATCH_LINES", 20_000)

# --- Import and upload limits: hostile input becomes a per-line error or a 413, never a crashed job or a full disk.
# JSON nesting per line (COCO: per file); checked on the bytes before a parser recurses (msgspec gives up near 1000).
IMPORT_MAX_JSON_DEPTH = env_int("IMPORT_MAX_JSON_DEPTH", 32)
# Bytes per manifest line (a YOLO label file, a data.yaml): longer ones are skipped without being held in memory.
IMPORT_MAX_LINE_BYTES = env_int("IMPORT_MAX_LINE_BYTES", 8 * 1024 * 1024)
# Labels, and predictions, per datarow; metadata leaves per datarow (each one is a field catalog path).
IMPORT_MAX_ITEMS_PER_ROW = env_int("IMPORT_MAX_ITEMS_PER_ROW", 10_000)
IMPORT_MAX_METADATA_KEYS = env_int("IMPORT_MAX_METADATA_KEYS", 1_000)
# A file uploaded to start an import: larger ones are refused with 413 before (or while) the body is read.
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 2 * 1024**3)
FILE_UPLOAD_HANDLERS = [
    "mlops.uploads.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

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
# random_page_cost of the same statements: at PostgreSQL's default 4 (a spinning disk's) their LIMIT's early-stopping
# index walk loses to hashing every datarow id; 1.1 is the usual value where data is cached or on SSD (Aurora's).
SEARCH_ESTIMATE_RANDOM_PAGE_COST = env_float("SEARCH_ESTIMATE_RANDOM_PAGE_COST", 1.1)
# Exact label and prediction class facets run on sessions of their own, at the same time as the total and the other
# facets, on one exported snapshot (search/engines/snapshot_sessions.py): a faceted search then holds one database
# connection more per object facet while it runs. Off: one statement on one connection.
SEARCH_PARALLEL_FACETS = env_bool("SEARCH_PARALLEL_FACETS", True)
if SEARCH_ENGINE not in ("postgres", "elasticsearch"):
    raise ImproperlyConfigured(f"SEARCH_ENGINE must be postgres or elasticsearch, not {SEARCH_ENGINE!r}")
if SEARCH_ENGINE == "elasticsearch" and not ELASTICSEARCH_URL:
    raise ImproperlyConfigured("SEARCH_ENGINE=elasticsearch needs ELASTICSEARCH_URL")

# --- Trainer plugins: the operator's trainers beside the built-ins, a JSON object {"name": "package.module:ClassName"}.
# Requests choose a trainer by one of these names only; nothing a request sends is ever imported.
try:
    TRAINER_PLUGINS = json.loads(env_str("TRAINER_PLUGINS", "{}"))
except json.JSONDecodeError as error:
    raise ImproperlyConfigured(f"TRAINER_PLUGINS must be a JSON object: {error}") from error

# --- Bounds and fair shares: no query, request or client of one tenant can starve the others.
# Every statement of a search (and of its parallel facet sessions) runs under this timeout; a search that reaches it
# is a 422 telling the caller to narrow the query.
SEARCH_STATEMENT_TIMEOUT_MS = env_int("SEARCH_STATEMENT_TIMEOUT_MS", 10_000)
# Size limits of the query language (search/ql/limits.py), for searches, slices and bulk actions alike.
SEARCH_MAX_QUERY_CHARS = env_int("SEARCH_MAX_QUERY_CHARS", 10_000)
SEARCH_MAX_DEPTH = env_int("SEARCH_MAX_DEPTH", 32)
SEARCH_MAX_IN_VALUES = env_int("SEARCH_MAX_IN_VALUES", 1_000)
SEARCH_MAX_PATTERN_LENGTH = env_int("SEARCH_MAX_PATTERN_LENGTH", 200)
SEARCH_MAX_PATTERN_WILDCARDS = env_int("SEARCH_MAX_PATTERN_WILDCARDS", 10)
SEARCH_MAX_FACETS = env_int("SEARCH_MAX_FACETS", 10)
# Statistics (search/statistics): per request, distinct values one count may have (an Elasticsearch terms size), bins.
SEARCH_MAX_STATISTICS = env_int("SEARCH_MAX_STATISTICS", 10)
SEARCH_STATISTICS_MAX_VALUES = env_int("SEARCH_STATISTICS_MAX_VALUES", 10_000)
SEARCH_STATISTICS_MAX_BINS = env_int("SEARCH_STATISTICS_MAX_BINS", 1_000)
# Searches one tenant may run at once (across every web process): a Redis semaphore whose slots are leases, so a
# process that dies mid-search frees its slot after SEARCH_SLOT_LEASE_SECONDS.
SEARCH_MAX_CONCURRENT_PER_TENANT = env_int("SEARCH_MAX_CONCURRENT_PER_TENANT", 8)
SEARCH_SLOT_LEASE_SECONDS = env_int("SEARCH_SLOT_LEASE_SECONDS", 120)
# Requests per user and per tenant to every API (DRF throttling on the Redis cache), "<count>/<sec|min|hour|day>".
API_RATE_PER_USER = env_str("API_RATE_PER_USER", "1200/min")
API_RATE_PER_TENANT = env_str("API_RATE_PER_TENANT", "6000/min")
# Open websockets per user; each is a lease that lapses after WEBSOCKET_SLOT_LEASE_SECONDS if its process died.
WEBSOCKET_MAX_CONNECTIONS_PER_USER = env_int("WEBSOCKET_MAX_CONNECTIONS_PER_USER", 20)
WEBSOCKET_SLOT_LEASE_SECONDS = env_int("WEBSOCKET_SLOT_LEASE_SECONDS", 6 * 3600)

# --- Demo jobs: POST /api/v1/jobs/ starts the `count` job (README's first session) in development and test only;
# production answers 400 for the kind, so no editor can spend its workers on a demo.
DEMO_JOBS = MLOPS_ENV in ("development", "test")

# --- REST API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenancy.authentication.PlatformPrincipalAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tenancy.permissions.HasWorkspaceRole"],
    "DEFAULT_PAGINATION_CLASS": "mlops.pagination.CreatedCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "mlops.schema.AutoSchema",
    # The API takes JSON; an upload API names multipart itself (DatasetImportStartApi).
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "EXCEPTION_HANDLER": "mlops.exception_handler.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["mlops.throttling.UserRateThrottle", "mlops.throttling.TenantRateThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "mlops API",
    "DESCRIPTION": "Projects, datasets, search, slices, training and predictions for computer-vision teams.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # The docs load Swagger UI and Redoc from this server (drf-spectacular-sidecar), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    # Request and response components apart, so a read-only field is not asked for in a request body.
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.Job.Status",
        "SliceStatusEnum": ["ready", "freezing", "failed"],
        "SplitEnum": ["train", "validation", "test"],
        # the search's count keeps its name beside the statistics' own count
        "CountEnum": ["exact", "estimate"],
        "StatisticCountEnum": ["objects", "images"],
        "StatisticKindEnum": ["count", "histogram"],
        "StatisticGroupSplitEnum": ["all", "train", "validation", "test", "unassigned"],
        # the import's JSON body and its multipart form share it
        "DatasetImportStartInputFormatEnum": "datasets.importers.formats.FORMATS",
    },
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "platformServiceKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "The platform's service key (PLATFORM_SERVICE_KEY).",
            }
        }
    },
    "TAGS": [
        {"name": "projects", "description": "Projects: the container of datasets, ontology, slices and models."},
        {"name": "datasets", "description": "Datasets, their imports and exports, datarows, labels and ontology."},
        {"name": "search", "description": "The query language over datarows, facets, bulk actions, reindexing."},
        {"name": "slices", "description": "Live, id and frozen slices, their members and splits."},
        {"name": "training", "description": "Model definitions and training runs."},
        {"name": "predictions", "description": "Model versions, metrics, prediction runs and selections."},
        {"name": "jobs", "description": "Every long operation as a job: status, progress, counters, cancel."},
        {"name": "platform", "description": "Called by the platform with its service key: tenant provisioning."},
    ],
    # `check --deploy` also generates the schema and reports its warnings (the schema is the frontend's contract).
    "ENABLE_DJANGO_DEPLOY_CHECK": True,
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
            "()": "mlops.observability.RedactingJsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        # The web server's lines (a websocket's "WebSocket /ws/jobs/<id>/?token=... [accepted]") through the
        # redacting JSON handler, under `uvicorn` (make run) as under gunicorn's UvicornWorker; their level stays the
        # server's own (--log-level).
        "uvicorn.error": {"handlers": ["console"], "propagate": False},
        # Off, as gunicorn leaves it: mlops.request is the access log, with tenant and user.
        "uvicorn.access": {"handlers": [], "propagate": False},
    },
}
if SENTRY_DSN:
    import sentry_sdk

    from mlops.observability import sentry_before_send

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        environment=MLOPS_ENV,
        send_default_pii=False,
        before_send=sentry_before_send,
        before_send_transaction=sentry_before_send,
        traces_sample_rate=env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0),
    )
