"""Test settings: the real settings, with only what tests need overridden."""

from __future__ import annotations

import os
import secrets

os.environ.setdefault("ONEAPI_QUIET_SECRET_WARNING", "1")
# Redis outlives the test database, which is new on every run (its ids start again at 1):
# each run, and the servers it starts, keeps its Redis keys (shared ledger, limits) apart.
os.environ.setdefault("CACHE_KEY_PREFIX", f"oneapi-test-{secrets.token_hex(4)}")

from oneapi.settings import *  # noqa: E402,F403
from oneapi.settings import DATABASES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# SQLite tests use a file so that subprocesses (Daphne, Celery) started by fixtures can see
# the same test database.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-one-api.db")}  # noqa: F405
