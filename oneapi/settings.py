"""The only settings module. Every knob is One API's environment variable of the same name.

Values are validated here, at import time, so a bad deployment fails at startup with a message
that names the variable instead of failing on the first request.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import time
import warnings
import zoneinfo
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from oneapi.dsn import parse_dsn, sqlite_database
from oneapi.env import env_bool, env_choice, env_float, env_int, env_str
from oneapi.version import VERSION as VERSION  # re-exported as settings.VERSION

BASE_DIR = Path(__file__).resolve().parent.parent
# A .env file in the working directory is read when present; real environment variables win.
load_dotenv(Path.cwd() / ".env", override=False)


DEBUG = env_bool("DEBUG", False)
DATA_DIR = Path(env_str("DATA_DIR", str(Path.cwd() / "data"))).resolve()
LOG_DIR = env_str("ONEAPI_LOG_DIR", "")

# --- secrets ------------------------------------------------------------------------------
SESSION_SECRET = env_str("SESSION_SECRET", "")
if SESSION_SECRET == "random_string":
    # One API refuses the placeholder from its own docs; so do we.
    raise ImproperlyConfigured("SESSION_SECRET is the documentation placeholder; set a real secret")
if not SESSION_SECRET:
    SESSION_SECRET = secrets.token_urlsafe(48)
    if os.environ.get("ONEAPI_QUIET_SECRET_WARNING") != "1":
        warnings.warn(
            "SESSION_SECRET is not set: a random secret is used, so sessions end on restart "
            "and nodes cannot share them",
            stacklevel=1,
        )
SECRET_KEY = SESSION_SECRET

ALLOWED_HOSTS = ["*"]
CSRF_TRUSTED_ORIGINS = [
    origin for origin in env_str("CSRF_TRUSTED_ORIGINS", "").split(",") if origin.strip()
]

# --- cluster --------------------------------------------------------------------------------
NODE_TYPE = env_choice("NODE_TYPE", "master", ("master", "slave"))
IS_MASTER_NODE = NODE_TYPE == "master"
FRONTEND_BASE_URL = env_str("FRONTEND_BASE_URL", "").rstrip("/")
if FRONTEND_BASE_URL and not FRONTEND_BASE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured("FRONTEND_BASE_URL must start with http:// or https://")
SYNC_FREQUENCY = env_int("SYNC_FREQUENCY", 600, minimum=1)
MEMORY_CACHE_ENABLED = env_bool("MEMORY_CACHE_ENABLED", True)
BATCH_UPDATE_ENABLED = env_bool("BATCH_UPDATE_ENABLED", False)
BATCH_UPDATE_INTERVAL = env_int("BATCH_UPDATE_INTERVAL", 5, minimum=1)
CHANNEL_UPDATE_FREQUENCY = env_int("CHANNEL_UPDATE_FREQUENCY", 0, minimum=0)
CHANNEL_TEST_FREQUENCY = env_int("CHANNEL_TEST_FREQUENCY", 0, minimum=0)
LOG_RETENTION_DAYS = env_int("LOG_RETENTION_DAYS", 0, minimum=0)  # 0 = keep consume logs
POLLING_INTERVAL = env_int("POLLING_INTERVAL", 0, minimum=0)
GLOBAL_API_RATE_LIMIT = env_int("GLOBAL_API_RATE_LIMIT", 480, minimum=0)
GLOBAL_WEB_RATE_LIMIT = env_int("GLOBAL_WEB_RATE_LIMIT", 240, minimum=0)

# --- relay ----------------------------------------------------------------------------------
RELAY_TIMEOUT = env_int("RELAY_TIMEOUT", 0, minimum=0)  # seconds; 0 = no overall limit
RELAY_PROXY = env_str("RELAY_PROXY", "")
USER_CONTENT_REQUEST_TIMEOUT = env_int("USER_CONTENT_REQUEST_TIMEOUT", 30, minimum=1)
USER_CONTENT_REQUEST_PROXY = env_str("USER_CONTENT_REQUEST_PROXY", "")
# Image URLs in requests are fetched (token counts, inline upstreams) from public addresses
# only; true also lets them reach private, loopback and link-local ones (relay/images.py).
IMAGE_FETCH_ALLOW_PRIVATE = env_bool("IMAGE_FETCH_ALLOW_PRIVATE", False)
# Comma-separated networks (CIDR) allowed despite being private: an operator's image host.
IMAGE_FETCH_ALLOWED_NETWORKS = [
    item.strip() for item in env_str("IMAGE_FETCH_ALLOWED_NETWORKS", "").split(",") if item.strip()
]
for _network in IMAGE_FETCH_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"IMAGE_FETCH_ALLOWED_NETWORKS: {_network!r} is not an IP network"
        ) from None
# As oneapi.proxies speaks them (One API's Go client takes the same).
PROXY_SCHEMES = ("http://", "https://", "socks5://", "socks5h://")
for _proxy_name, _proxy in (
    ("RELAY_PROXY", RELAY_PROXY),
    ("USER_CONTENT_REQUEST_PROXY", USER_CONTENT_REQUEST_PROXY),
):
    if _proxy and not _proxy.lower().startswith(PROXY_SCHEMES):
        raise ImproperlyConfigured(
            f"{_proxy_name} must be an http://, https://, socks5:// or socks5h:// URL"
        )
ENFORCE_INCLUDE_USAGE = env_bool("ENFORCE_INCLUDE_USAGE", False)
RELAY_MAX_BODY_SIZE = env_int("RELAY_MAX_BODY_SIZE", 64 * 1024 * 1024, minimum=1024)
GEMINI_SAFETY_SETTING = env_choice(
    "GEMINI_SAFETY_SETTING",
    "BLOCK_NONE",
    ("BLOCK_NONE", "BLOCK_ONLY_HIGH", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_LOW_AND_ABOVE", "OFF"),
)
GEMINI_VERSION = env_str("GEMINI_VERSION", "v1")
if not re.fullmatch(r"v\d+(alpha|beta)?\d*", GEMINI_VERSION):
    raise ImproperlyConfigured(
        f"GEMINI_VERSION must look like v1 or v1beta, got {GEMINI_VERSION!r}"
    )
TEST_PROMPT = env_str(
    "TEST_PROMPT", "Output only your specific model name with no additional text."
)
TIKTOKEN_CACHE_DIR = env_str("TIKTOKEN_CACHE_DIR", env_str("DATA_GYM_CACHE_DIR", ""))
if TIKTOKEN_CACHE_DIR and not Path(TIKTOKEN_CACHE_DIR).is_dir():
    raise ImproperlyConfigured(f"TIKTOKEN_CACHE_DIR is not a directory: {TIKTOKEN_CACHE_DIR!r}")
THEME = env_choice("THEME", "default", ("default", "berry", "air"))
ENABLE_METRIC = env_bool("ENABLE_METRIC", False)
METRIC_QUEUE_SIZE = env_int("METRIC_QUEUE_SIZE", 10, minimum=1)
METRIC_SUCCESS_RATE_THRESHOLD = env_float(
    "METRIC_SUCCESS_RATE_THRESHOLD", 0.8, minimum=0.0, maximum=1.0
)
INITIAL_ROOT_TOKEN = env_str("INITIAL_ROOT_TOKEN", "")
INITIAL_ROOT_ACCESS_TOKEN = env_str("INITIAL_ROOT_ACCESS_TOKEN", "")
if INITIAL_ROOT_TOKEN.removeprefix("sk-") and len(INITIAL_ROOT_TOKEN.removeprefix("sk-")) > 48:
    raise ImproperlyConfigured("INITIAL_ROOT_TOKEN must be at most 48 characters after 'sk-'")
if INITIAL_ROOT_ACCESS_TOKEN and len(INITIAL_ROOT_ACCESS_TOKEN) > 32:
    raise ImproperlyConfigured("INITIAL_ROOT_ACCESS_TOKEN must be at most 32 characters")

# --- databases ------------------------------------------------------------------------------
SQLITE_BUSY_TIMEOUT = env_int("SQLITE_BUSY_TIMEOUT", 3000, minimum=0)
SQL_MAX_IDLE_CONNS = env_int("SQL_MAX_IDLE_CONNS", 100, minimum=0)
SQL_MAX_OPEN_CONNS = env_int("SQL_MAX_OPEN_CONNS", 1000, minimum=1)
# One API reads SQL_MAX_LIFETIME (seconds); its README documents SQL_CONN_MAX_LIFETIME. Accept both.
SQL_CONN_MAX_LIFETIME = env_int(
    "SQL_CONN_MAX_LIFETIME", env_int("SQL_MAX_LIFETIME", 60, minimum=0), minimum=0
)


def _database(variable: str) -> dict:
    raw = env_str(variable, "")
    if raw:
        entry = parse_dsn(raw, variable=variable)
    else:
        entry = sqlite_database(
            env_str("SQLITE_PATH", str(DATA_DIR / "one-api.db")),
            busy_timeout_ms=SQLITE_BUSY_TIMEOUT,
        )
    if entry["ENGINE"].endswith("sqlite3"):
        entry["OPTIONS"]["timeout"] = SQLITE_BUSY_TIMEOUT / 1000
        # The embedded default must start on a fresh checkout: create ./data if missing.
        Path(entry["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    entry["CONN_MAX_AGE"] = SQL_CONN_MAX_LIFETIME
    entry["CONN_HEALTH_CHECKS"] = True
    return entry


DATABASES = {"default": _database("SQL_DSN")}
LOG_SQL_DSN = env_str("LOG_SQL_DSN", "")
if LOG_SQL_DSN:
    DATABASES["logs"] = _database("LOG_SQL_DSN")
DATABASE_ROUTERS = ["oneapi.db_routers.LogDatabaseRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if any(db["ENGINE"].endswith("mysql") for db in DATABASES.values()):
    import pymysql

    pymysql.install_as_MySQLdb()

# --- redis: cache, Celery broker, channel layer ----------------------------------------------
REDIS_CONN_STRING = env_str("REDIS_CONN_STRING", "")
if REDIS_CONN_STRING and not REDIS_CONN_STRING.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured("REDIS_CONN_STRING must be a redis://, rediss:// or unix:// URL")
REDIS_ENABLED = bool(REDIS_CONN_STRING)
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "oneapi")

if REDIS_ENABLED:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_CONN_STRING,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_CONN_STRING], "prefix": f"{CACHE_KEY_PREFIX}:asgi"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery. Without Redis the broker is kombu's filesystem transport under DATA_DIR: it needs no
# server, works across processes (web, worker and beat exchange messages as files moved
# atomically under a lock) and adds no dependency.
CELERY_DATA_DIR = DATA_DIR / "celery"
if REDIS_ENABLED:
    CELERY_BROKER_URL = REDIS_CONN_STRING
    CELERY_RESULT_BACKEND = REDIS_CONN_STRING
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
else:
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DATA_DIR / "queue"),
        "data_folder_out": str(CELERY_DATA_DIR / "queue"),
        "processed_folder": str(CELERY_DATA_DIR / "processed"),
        "control_folder": str(CELERY_DATA_DIR / "control"),
        "store_processed": False,
    }
    CELERY_RESULT_BACKEND = f"file://{CELERY_DATA_DIR / 'results'}"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(CELERY_DATA_DIR / "beat-schedule")

# --- Django ---------------------------------------------------------------------------------
# Not "daphne": listing it only swaps `runserver` for Daphne's, and it would load Twisted
# (~13 MB) into every process, uvicorn's and Celery's included. `oneapi` starts the server.
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "channels",
    "oneapi",
    "accounts",
    "channels_mgmt",
    "billing",
    "relay",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]
ROOT_URLCONF = "oneapi.urls"
ASGI_APPLICATION = "oneapi.asgi.application"
AUTH_USER_MODEL = "accounts.User"
# Django's default hashers, plus bcrypt to verify users imported from One API (it stores
# bcrypt hashes); they are re-hashed with the first hasher on their first login.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "django.contrib.auth.hashers.BCryptPasswordHasher",
]

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
    }
]

SESSION_COOKIE_NAME = "session"
SESSION_ENGINE = (
    "django.contrib.sessions.backends.cache"
    if REDIS_ENABLED
    else "django.contrib.sessions.backends.db"
)

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
TIME_ZONE = env_str("TZ", "UTC") or "UTC"
try:
    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(f"TZ is not a known time zone: {TIME_ZONE!r}") from None
USE_I18N = True
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["oneapi.parsers.SafeJSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "oneapi.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "oneapi.schema.EnvelopeAutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "oneapi-py management API",
    "DESCRIPTION": (
        "One API's /api routes. Every answer is {success, message, data}; authenticate with "
        "the session cookie or the user's system access token in Authorization."
    ),
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Only the management API: the relay is OpenAI's API, documented by OpenAI.
    "SCHEMA_PATH_PREFIX": r"/api/",
}

# --- allauth: logins, registration, OAuth, email ---------------------------------------------
# One API's own `/api` auth routes live in accounts/auth_views.py; allauth's `/accounts/` pages
# are kept for the future dashboard. Both read the run-time options (client ids, RegisterEnabled,
# SMTP ...) through accounts/adapters.py and accounts/email.py, so nothing here needs a restart.
INSTALLED_APPS += [
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.github",
    "allauth.socialaccount.providers.feishu",
]
MIDDLEWARE += ["allauth.account.middleware.AccountMiddleware"]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "accounts.adapters.SocialAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username", "email"}  # One API logs in by username or email
ACCOUNT_SIGNUP_FIELDS = ["username*", "email", "password1*", "password2*"]
ACCOUNT_USERNAME_MIN_LENGTH = 1
ACCOUNT_EMAIL_VERIFICATION = "optional"
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # never merge accounts on an unverified email
# Every mail (verification codes, reset links, allauth's own) goes out through the SMTP options.
EMAIL_BACKEND = "accounts.email.OptionsEmailBackend"
EMAIL_TIMEOUT = 10
# Provider endpoints. Only tests point these elsewhere (fake servers); production keeps the
# defaults. WeChat needs none: its server address is the WeChatServerAddress option.
ONEAPI_GITHUB_URL = env_str("ONEAPI_GITHUB_URL", "https://github.com").rstrip("/")
ONEAPI_GITHUB_API_URL = env_str("ONEAPI_GITHUB_API_URL", "https://api.github.com").rstrip("/")
ONEAPI_FEISHU_URL = env_str("ONEAPI_FEISHU_URL", "https://open.feishu.cn").rstrip("/")
ONEAPI_TURNSTILE_VERIFY_URL = env_str(
    "ONEAPI_TURNSTILE_VERIFY_URL", "https://challenges.cloudflare.com/turnstile/v0/siteverify"
)

# --- logging --------------------------------------------------------------------------------
# json: one JSON object per line (time, level, logger, message, request_id, exception).
LOG_FORMAT = env_choice("LOG_FORMAT", "plain", ("plain", "json"))
_handlers = ["console"]
LOGGING: dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "[%(levelname)s] %(asctime)s %(name)s: %(message)s"},
        "json": {"()": "oneapi.log_format.JsonFormatter"},
    },
    # Every record gets the id of the relay request being served (None outside one).
    "filters": {"request_id": {"()": "oneapi.log_format.RequestIdFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": _handlers, "level": "DEBUG" if DEBUG else "INFO"},
    "loggers": {
        "django.db.backends": {"level": "DEBUG" if env_bool("DEBUG_SQL") else "INFO"},
        "httpx": {"level": "WARNING"},
    },
}
if LOG_DIR:
    Path(LOG_DIR).mkdir(parents=True, exist_ok=True)
    _log_file = (
        "oneapi.log" if env_bool("ONLY_ONE_LOG_FILE") else time.strftime("oneapi-%Y%m%d.log")
    )
    LOGGING["handlers"]["file"] = {
        "class": "logging.FileHandler",
        "formatter": LOG_FORMAT,
        "filters": ["request_id"],
        "filename": str(Path(LOG_DIR) / _log_file),
    }
    _handlers.append("file")

# Celery logs through the LOGGING above (console and --log-dir) instead of its own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "prune-cache-events": {
        "task": "oneapi.prune_cache_events",
        "schedule": 600.0,
        "options": {"expires": 600},
    },
    "recover-orphaned-journals": {
        "task": "billing.recover_orphaned_journals",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
}

# One API's periodic jobs, in minutes (0 = off): the test of every channel and the balances.
if CHANNEL_TEST_FREQUENCY:
    CELERY_BEAT_SCHEDULE["test-all-channels"] = {
        "task": "channels_mgmt.test_all_channels",
        "schedule": CHANNEL_TEST_FREQUENCY * 60.0,
        "args": ("all",),
        "options": {"expires": CHANNEL_TEST_FREQUENCY * 60},
    }
CELERY_BEAT_SCHEDULE["send-quota-alerts"] = {
    "task": "billing.send_quota_alerts",
    "schedule": 60.0,
    "options": {"expires": 60},
}
if LOG_RETENTION_DAYS:
    CELERY_BEAT_SCHEDULE["prune-logs"] = {
        "task": "billing.prune_logs",
        "schedule": 3600.0,
        "options": {"expires": 3600},
    }
if CHANNEL_UPDATE_FREQUENCY:
    CELERY_BEAT_SCHEDULE["update-all-balances"] = {
        "task": "channels_mgmt.update_all_balances",
        "schedule": CHANNEL_UPDATE_FREQUENCY * 60.0,
        "options": {"expires": CHANNEL_UPDATE_FREQUENCY * 60},
    }
