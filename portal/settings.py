"""Settings for every environment, read from environment variables.

The embedded defaults (SQLite file, a local Redis URL, console e-mail) let a fresh clone
run with no configuration. DEBUG is off unless a developer sets `DEBUG=1`: visitors of the
one-command run see the product's error pages, never Django's technical ones (errors go
to the console log). Production sets `PORTAL_ENV=production`, which refuses to start
without a strong `SECRET_KEY` (see `_require_strong`).
"""

import os
import sys
from decimal import Decimal
from pathlib import Path

import certifi
import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


PRODUCTION = env("PORTAL_ENV", "development") == "production"
DEV_SECRET_KEY = "dev-insecure-key-for-local-use-only-never-in-production"  # noqa: S105
WEAK_SECRET_KEYS = {"", "changeme", "secret", "django-insecure", DEV_SECRET_KEY}


def _require_strong(name: str, value: str) -> str:
    """Production must not run on a guessable key: sessions, tokens and invites hang on it."""
    if value in WEAK_SECRET_KEYS or value.startswith("django-insecure") or len(value) < 50:
        raise ImproperlyConfigured(
            f"{name} must be set to a random value of at least 50 characters in production"
        )
    if len(set(value)) < 5:
        raise ImproperlyConfigured(f"{name} is too repetitive to be a secret")
    return value


SECRET_KEY = env("SECRET_KEY", "" if PRODUCTION else DEV_SECRET_KEY)
# API tokens are digested with their own key so that rotating SECRET_KEY (sessions) does
# not invalidate every customer's token.
TOKEN_HMAC_KEY = env("TOKEN_HMAC_KEY", SECRET_KEY)
if PRODUCTION:
    _require_strong("SECRET_KEY", SECRET_KEY)
    _require_strong("TOKEN_HMAC_KEY", TOKEN_HMAC_KEY)

DEBUG = env_bool("DEBUG", default=False) and not PRODUCTION
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "portal",
    "models_hub",
    "inference",
    "billing",
]

MIDDLEWARE = [
    "portal.monitoring.RequestMetricsMiddleware",
    "portal.middleware.AllowedHostsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "portal.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.abuse.ClientIpRateLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "portal.middleware.CurrentOrgMiddleware",
    "portal.middleware.ApiErrorPagesMiddleware",
]
# The OpenAI-compatible /v1/ API's chain (portal/api_handler.py), all on the event loop:
# bearer tokens only, so no sessions, CSRF, messages or current org; JSON only, so no CSP.
API_MIDDLEWARE = [
    "portal.monitoring.RequestMetricsMiddleware",
    "portal.middleware.AllowedHostsMiddleware",
    "portal.api_handler.SecurityMiddleware",
    "portal.abuse.ClientIpRateLimitMiddleware",
    "portal.api_handler.XFrameOptionsMiddleware",
    "portal.middleware.ApiErrorPagesMiddleware",
]
# The prediction event stream's chain (portal/stream_handler.py), all on the event loop:
# bearer tokens or the browser's session (read, never saved); the view changes nothing (any
# method but GET is a 405), so no CSRF; JSON or text/event-stream only, so no CSP.
STREAM_MIDDLEWARE = [
    "portal.monitoring.RequestMetricsMiddleware",
    "portal.middleware.AllowedHostsMiddleware",
    "portal.api_handler.SecurityMiddleware",
    "portal.abuse.ClientIpRateLimitMiddleware",
    "portal.stream_handler.ReadOnlySessionMiddleware",
    "portal.stream_handler.AuthenticationMiddleware",
    "portal.api_handler.XFrameOptionsMiddleware",
    "portal.middleware.ApiErrorPagesMiddleware",
]
# The threads every stream's sync code (its lookups, Django's request signals) shares.
# More than one so that a call stuck on the database stalls only the opens on its thread,
# and opens overlap their waits on a remote database. Opening is CPU-bound otherwise: on a
# 2-core machine with a local database, 1 and 4 threads both opened 130-230 streams/s.
STREAM_SYNC_THREADS = env_int("STREAM_SYNC_THREADS", 4)
# /v1 requests each borrow a thread for their sync code (portal/api_handler.py); this
# many idle ones are kept for the next requests, the rest end.
API_IDLE_SYNC_THREADS = env_int("API_IDLE_SYNC_THREADS", 64)

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"
WSGI_APPLICATION = None

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
                "portal.context_processors.current_org",
            ],
        },
    },
]

# --- Data stores -------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}"),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default has a web process and a worker writing at once: WAL lets
    # readers proceed, IMMEDIATE transactions queue writers instead of failing them.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif env_bool("DB_POOL", True):
    # psycopg's pool: connections are reused across requests and tasks without
    # persistent per-thread connections, which ASGI does not suit.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("DB_POOL_MAX_SIZE", 20),
        "timeout": 10,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DB_PREPARED_STATEMENTS", True
):
    # Parameters bound by the server, and a statement run more than DB_PREPARE_THRESHOLD
    # times on a connection prepared there: the spine runs the same eight statements on
    # every call, and parsing and planning them each time was a quarter to a third of
    # PostgreSQL's CPU per prediction (bench/peer.py). psycopg forgets a connection's
    # prepared statements at every rollback, so refused calls only cost the next ones a
    # parse again. Off (Django's default) behind a pooler that cannot carry prepared
    # statements across its server connections (PgBouncer before 1.21 in transaction mode).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=env_int("DB_PREPARE_THRESHOLD", 5)
    )
if env("TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME")}

REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
# How long Redis may be unreachable (a restart, a failover) before a command fails:
# workers keep appending events and checking cancels across it instead of failing the
# prediction. The readiness probe does not wait (it uses its own short timeout).
REDIS_OUTAGE_TOLERANCE_SECONDS = env_int("REDIS_OUTAGE_TOLERANCE_SECONDS", 15)
# Connections each process keeps to Redis; past that, a command waits for a free one.
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 100)
REDIS_POOL_WAIT_SECONDS = env_int("REDIS_POOL_WAIT_SECONDS", 20)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", "portal"),
    }
}
# No CHANNEL_LAYERS: WebSocket consumers tail each prediction's Redis Stream directly,
# so no socket needs a channel-layer subscription (one blocking Redis read less each).

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth --------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "home"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_USER_MODEL_USERNAME_FIELD = "username"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_ADAPTER = "portal.adapters.AccountAdapter"
# Failed log-ins are throttled per IP and per account (allauth keeps counters in the
# shared Redis cache, so every web process sees the same count).
ACCOUNT_RATE_LIMITS = {
    "login_failed": env("LOGIN_FAILED_RATE", "5/5m/ip,5/5m/key"),
    "signup": "20/h/ip",
    "reset_password": "20/h/ip,5/h/key",
    "confirm_email": "5/5m/key",
}

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
if env("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env("EMAIL_HOST")
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Model Portal <noreply@localhost>")

INVITATION_MAX_AGE_SECONDS = env_int("INVITATION_MAX_AGE_SECONDS", 7 * 24 * 3600)

# --- API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api.authentication.BearerTokenAuthentication",
        "portal.api.authentication.OrgSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["portal.api.permissions.HasOrg"],
    "DEFAULT_RENDERER_CLASSES": ["portal.api.renderers.SafeJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["portal.api.parsers.StorableJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.CursorlessPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "portal.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Model Portal API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "inference.api.schema.add_async_endpoints",
    ],
    "ENUM_NAME_OVERRIDES": {
        "PredictionStatusEnum": "inference.models.Status",
        "ListingStatusEnum": "models_hub.models.ListingStatus",
        "AccountWebhookEventEnum": "portal.models.ACCOUNT_WEBHOOK_EVENTS",
    },
}
# Requests larger than this are answered 413 by the ASGI layer (portal/body_limit.py)
# before Django reads them; routes that need more are listed by path prefix below (e.g.
# API.md's `/api/v1/files` will take 10 MiB: {"/api/v1/files": 10 * 1024 * 1024}).
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 1024 * 1024)
# --- Images (issue #17; API.md "Files") ---
IMAGE_MAX_BYTES = 10 * 1024 * 1024
IMAGE_MAX_PIXELS = 40_000_000
IMAGE_MAX_SIDE = 10_000
# An upload is multipart (a little over the image); a prediction may carry the image as a
# base64 data: URI, 4/3 of its bytes.
REQUEST_BODY_LIMITS: dict[str, int] = {
    "/api/v1/files": IMAGE_MAX_BYTES + 64 * 1024,
    "/api/v1/predictions": 14 * 1024 * 1024,
}
FILE_TTL_SECONDS = env_int("FILE_TTL_SECONDS", 24 * 3600)
# What one org may keep stored at once, so that one tenant cannot fill the disk.
FILES_MAX_PER_ORG = env_int("FILES_MAX_PER_ORG", 1000)
FILES_MAX_BYTES_PER_ORG = env_int("FILES_MAX_BYTES_PER_ORG", 2 * 1024**3)
# Django's own check comes after the ASGI layer's per-route limits: the largest of them.
DATA_UPLOAD_MAX_MEMORY_SIZE = max([MAX_REQUEST_BODY_BYTES, *REQUEST_BODY_LIMITS.values()])
# last_used_at is written at most this often per token.
TOKEN_LAST_USED_RESOLUTION_SECONDS = 60

# Customers' webhooks may target private addresses only outside production (SSRF).
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env_bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", not PRODUCTION)
WEBHOOK_TIMEOUT_SECONDS = 10
# The CAs that webhook receivers' certificates must chain to (default: certifi's, as
# requests uses); operators behind a TLS-inspecting proxy point it at their own bundle.
WEBHOOK_CA_BUNDLE = env("WEBHOOK_CA_BUNDLE", "") or certifi.where()
# Requests per minute for a token without its own limit (plans may lower it).
DEFAULT_TOKEN_RATE_LIMIT_PER_MINUTE = env_int("DEFAULT_TOKEN_RATE_LIMIT_PER_MINUTE", 600)
# --- Abuse limits (API.md: 413 / 400 / 429 with Retry-After; WebSocket close 4429) ---
# Requests per minute from one client IP (IPv6: per /64), whoever is calling; healthz and
# readyz are exempt so load balancers can probe. 0 turns the limit off.
IP_RATE_LIMIT_PER_MINUTE = env_int("IP_RATE_LIMIT_PER_MINUTE", 1200)
IP_RATE_LIMIT_EXEMPT_PATHS = ("/healthz", "/readyz")
# How many reverse proxies we run in front of the app. 0 (the default) trusts nothing but
# REMOTE_ADDR: X-Forwarded-For is client-controlled unless our own proxy appended to it.
# With N > 0, the client is the Nth address from the right of X-Forwarded-For, and the
# proxy's X-Forwarded-Proto says whether the browser used https (SECURE_PROXY_SSL_HEADER).
# allauth's log-in throttling asks portal.ratelimit.client_ip (portal.adapters), so both
# limiters see the same client.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# Characters of text in one prediction's input (prompt, messages, texts, labels together),
# checked before any tokenizer runs; a listing may set a lower "max_input_chars" cap.
MAX_INPUT_CHARS = env_int("MAX_INPUT_CHARS", 200_000)
# Concurrent `Prefer: wait` requests and open streams (SSE, /v1, WebSocket) per org across
# every web process: the org's plan sets them (Plan.max_concurrent_*); these apply when
# billing is off (no plan). Over a cap: 429 with Retry-After, or WebSocket close 4429.
MAX_CONCURRENT_WAITS_PER_ORG = env_int("MAX_CONCURRENT_WAITS_PER_ORG", 50)
MAX_CONCURRENT_STREAMS_PER_ORG = env_int("MAX_CONCURRENT_STREAMS_PER_ORG", 200)
# Each held slot is a lease its holder renews while open: the slots of a process that died
# are free again this many seconds later.
CONCURRENCY_SLOT_LEASE_SECONDS = env_int("CONCURRENCY_SLOT_LEASE_SECONDS", 15)
# Open streams re-resolve their caller this often and end once the token is revoked or
# expired or the membership is gone (SSE `error` event, WebSocket close 4401).
STREAM_PRINCIPAL_RECHECK_SECONDS = env_int("STREAM_PRINCIPAL_RECHECK_SECONDS", 5)
# Plans, subscriptions and prices are cached per process and invalidated by every write
# (portal.hotcache); this bounds an entry's life should an invalidation ever be lost.
HOT_CACHE_MAX_AGE_SECONDS = env_int("HOT_CACHE_MAX_AGE_SECONDS", 300)

# --- Celery ------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
# A Redis broker publishes through one client per channel (portal/broker.py); any other
# broker keeps the transport its URL names.
if CELERY_BROKER_URL.partition("://")[0] in ("redis", "rediss"):
    CELERY_BROKER_TRANSPORT = "portal.broker:Transport"
CELERY_RESULT_BACKEND = None
# No results are kept, so the (disabled) backend holds no state: one per process. Celery
# otherwise builds one per thread, and the web sends tasks from one thread per concurrent
# request: building it was a quarter of a send's CPU whenever a thread was new.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every connection, and a prefork child's whole pool, before
# and after each task unless this is set: a new PostgreSQL session per task. Workers hand
# connections back to the pool after each task instead (portal/celery.py).
CELERY_DB_REUSE_MAX = sys.maxsize
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# With the Redis broker an unacknowledged message of a dead worker is redelivered only
# after this many seconds; the prediction reaper covers anything stuck longer.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 900),
}
CELERY_TIMEZONE = "UTC"
CATALOG_STATS_INTERVAL_SECONDS = env_int("CATALOG_STATS_INTERVAL_SECONDS", 120)
CELERY_BEAT_SCHEDULE = {
    "reap-stuck-predictions": {
        "task": "inference.tasks.reap_stuck_predictions",
        "schedule": env_int("REAPER_INTERVAL_SECONDS", 30),
    },
    "erase-expired-prediction-data": {
        "task": "inference.tasks.erase_expired_prediction_data",
        "schedule": env_int("RETENTION_INTERVAL_SECONDS", 300),
    },
    "report-overage-to-stripe": {
        "task": "billing.tasks.report_overage",
        "schedule": env_int("METER_REPORT_INTERVAL_SECONDS", 300),
    },
    # The catalog's public run figures (inference/catalog_stats.py): pages only read what
    # this stores. A run still queued one interval later (workers busy) is dropped, since
    # the next one is on its way.
    "refresh-catalog-stats": {
        "task": "inference.tasks.refresh_catalog_stats",
        "schedule": CATALOG_STATS_INTERVAL_SECONDS,
        "options": {"expires": CATALOG_STATS_INTERVAL_SECONDS},
    },
    # Pays last month out once its entries are past the hold; a run that finds the month
    # paid (or the hold not over) does nothing, so hourly is safe and retries failures.
    "pay-publishers": {
        "task": "billing.tasks.pay_publishers",
        "schedule": env_int("PAYOUT_INTERVAL_SECONDS", 3600),
    },
}
# Concurrent generations of one model in one worker run as a batch when this is above 1
# (a GPU worker on Celery's threads pool, see docker-compose.yml).
GENERATION_MAX_BATCH = env_int("GENERATION_MAX_BATCH", 1)
# `continuous` (default): a request joins the running batch at the next step, on
# transformers' paged-attention manager. `static`: requests that arrive within
# GENERATION_BATCH_WINDOW_MS of each other run as one batch; later ones wait for it.
GENERATION_BATCHING = env("GENERATION_BATCHING", "continuous")
if GENERATION_BATCHING not in {"continuous", "static"}:
    raise ImproperlyConfigured("GENERATION_BATCHING must be 'continuous' or 'static'")
GENERATION_BATCH_WINDOW_MS = env_int("GENERATION_BATCH_WINDOW_MS", 5)
if GENERATION_MAX_BATCH > 1:
    # A batch is shared by the threads of one process; prefork children cannot share one.
    # `celery worker --pool/--concurrency` still override these.
    CELERY_WORKER_POOL = "threads"
    CELERY_WORKER_CONCURRENCY = GENERATION_MAX_BATCH
# The continuous batcher's paged KV cache. Tokens per page (0: 256 on a GPU, 64 on a
# CPU); pages are allocated to a request as it grows.
GENERATION_KV_PAGE_SIZE = env_int("GENERATION_KV_PAGE_SIZE", 0)
# Whole-model blocks of a page each. 0 sizes the cache: on a GPU from free memory,
# GENERATION_KV_MEMORY_PERCENT (0: 90) of what it has free once the model is loaded; on
# a CPU, whose RAM every other process shares, room for GENERATION_MAX_BATCH requests of
# 512 tokens each (or that percent of free RAM, when set).
GENERATION_KV_BLOCKS = env_int("GENERATION_KV_BLOCKS", 0)
GENERATION_KV_MEMORY_PERCENT = env_int("GENERATION_KV_MEMORY_PERCENT", 0)
# Prompt and generated tokens computed in one forward pass (0: 512 on a CPU, else
# transformers' default); a longer prompt is prefilled in chunks of this size.
GENERATION_MAX_BATCH_TOKENS = env_int("GENERATION_MAX_BATCH_TOKENS", 0)
# A prediction still queued after this long is failed by the reaper.
PREDICTION_QUEUE_TIMEOUT_SECONDS = env_int("PREDICTION_QUEUE_TIMEOUT_SECONDS", 600)
PREFER_WAIT_MAX_SECONDS = 60
# A running prediction's worker renews this lease; the reaper fails it once it lapses.
PREDICTION_LEASE_SECONDS = env_int("PREDICTION_LEASE_SECONDS", 30)
# A worker appends the output that arrives within this many ms of its last append with
# the next one (inference.execution.OutputBuffer): one Redis round trip per window, not
# per token, for models faster than that; 0 appends every token on its own.
OUTPUT_COALESCE_MS = env_int("OUTPUT_COALESCE_MS", 10)

# --- Billing (Stripe) ---------------------------------------------------------------
# Without a secret key the portal runs on free and admin-granted plans only.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET")
# The Connect webhook endpoint's own secret (events of publishers' accounts), if any.
STRIPE_CONNECT_WEBHOOK_SECRET = env("STRIPE_CONNECT_WEBHOOK_SECRET")
# Another Stripe-compatible server (localstripe in development); empty is Stripe itself.
STRIPE_API_BASE = env("STRIPE_API_BASE")
STRIPE_METER_EVENT_NAME = env("STRIPE_METER_EVENT_NAME", "model_portal_overage_cents")
# A past_due subscription keeps its plan this long before falling back to free.
BILLING_PAST_DUE_GRACE_DAYS = env_int("BILLING_PAST_DUE_GRACE_DAYS", 7)
# The portal's one currency (ISO 4217, lower case as Stripe writes it): every listing
# price and every call's cost is in it.
PORTAL_CURRENCY = env("PORTAL_CURRENCY", "usd").lower()
# Publishers (Stripe Connect): the platform's share of every charge for a publisher's
# listing (operators override it per publisher in admin), and the monthly payout's rules.
PLATFORM_FEE_PERCENT = Decimal(env("PLATFORM_FEE_PERCENT", "20"))
PAYOUT_MINIMUM = Decimal(env("PAYOUT_MINIMUM", "25"))
PAYOUT_HOLD_DAYS = env_int("PAYOUT_HOLD_DAYS", 7)
# How far ahead a publisher's price change must be announced (issue #13); operators may
# still price any listing at once (`manage.py set_price`, admin).
PRICE_CHANGE_NOTICE_HOURS = env_int("PRICE_CHANGE_NOTICE_HOURS", 24)
# A listing subscriber keeps the prices they bought until their first renewal at least
# this long after a change was announced (issue #13, "Price lock").
LISTING_PRICE_LOCK_NOTICE_DAYS = env_int("LISTING_PRICE_LOCK_NOTICE_DAYS", 14)

# --- Static, i18n, misc ------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# The last one serves the browser libraries npm installed (portal/vendor.py lists them).
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "portal.vendor.VendorFinder",
]
S3_FILES_BACKEND = "storages.backends.s3.S3Storage"


def files_storage() -> dict:
    """STORAGES["files"]: uploaded and inline images (inference/files.py), never served by
    URL. By default a folder under the var directory. That is a legitimate production store
    too, so production does not refuse it: docker-compose.yml mounts one volume at the var
    directory in web, workers and beat, which therefore read the same bytes. Processes on
    different hosts share no folder, so such a deployment sets FILES_STORAGE_BACKEND to
    S3_FILES_BACKEND (django-storages) with the FILES_S3_* variables below."""
    backend = env("FILES_STORAGE_BACKEND")
    if not backend:
        return {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(VAR_DIR / "files"), "base_url": None},
        }
    if backend == S3_FILES_BACKEND:
        return {"BACKEND": backend, "OPTIONS": _s3_files_options()}
    return {"BACKEND": backend, "OPTIONS": {}}  # another backend, with its own settings


def _s3_files_options() -> dict:
    """The bucket from the environment. Credentials are not settings: django-storages and
    boto3 read AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment themselves
    (or the host's instance role), so no secret sits in STORAGES or in the repository."""
    bucket = env("FILES_S3_BUCKET")
    if not bucket:
        raise ImproperlyConfigured(f"FILES_S3_BUCKET must be set with {S3_FILES_BACKEND}")
    return {
        "bucket_name": bucket,
        # An S3-compatible store (MinIO, Ceph, R2, ...); empty means AWS itself.
        "endpoint_url": env("FILES_S3_ENDPOINT_URL") or None,
        "region_name": env("FILES_S3_REGION") or None,
        # "path" for stores without per-bucket host names (MinIO by default).
        "addressing_style": env("FILES_S3_ADDRESSING_STYLE") or None,
        "signature_version": "s3v4",
        # Private objects: no ACL is sent, so the bucket owner's policy applies (objects
        # are never public), and url() could only sign a short-lived link; the portal never
        # hands out storage URLs anyway (images are read through the file_content view).
        "default_acl": None,
        "querystring_auth": True,
        "custom_domain": None,
        # Names are the portal's own (org/<file id>.<ext>); never replace another's bytes.
        "file_overwrite": False,
    }


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "files": files_storage(),
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
# Rescanning static files on every request costs milliseconds; only DEBUG wants it.
WHITENOISE_AUTOREFRESH = DEBUG

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# `/metrics` is open under DEBUG; otherwise to staff and to this bearer token (Prometheus).
METRICS_TOKEN = env("METRICS_TOKEN", "")
# How often each process writes what it recorded to Redis (see portal/metrics.py).
METRICS_FLUSH_SECONDS = float(env("METRICS_FLUSH_SECONDS", "1"))

# JSON lines in production (for the log pipeline), readable text in development.
LOG_FORMAT = env("LOG_FORMAT", "json" if PRODUCTION else "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "portal.logs.ContextFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "portal.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
}
# Workers log through the configuration above, not Celery's own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Production hardening ----------------------------------------------------------
if PRODUCTION:
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set in production")
    # Only a proxy of ours may say the browser spoke https; without one the header is the
    # client's own claim (README: deploying behind a proxy).
    if TRUSTED_PROXY_COUNT > 0:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"
