"""First boot: create One API's root account and optional initial tokens, idempotently."""

from __future__ import annotations

import logging
import time
import uuid

from django.conf import settings
from django.db import transaction

from accounts.models import Role, User
from billing.models import ApiKey

logger = logging.getLogger(__name__)

ROOT_USERNAME = "root"
ROOT_DEFAULT_PASSWORD = "123456"
# One API gives root 500000000000000 quota (= 1e9 USD).
ROOT_QUOTA = 500_000_000_000_000
INITIAL_ROOT_TOKEN_NAME = "Initial Root Token"


@transaction.atomic
def ensure_root_account() -> User | None:
    """Create root when the users table is empty; returns the new user, or None if not needed."""
    if User.objects.select_for_update().exists():
        return None
    access_token = settings.INITIAL_ROOT_ACCESS_TOKEN or uuid.uuid4().hex
    root = User.objects.create_user(
        ROOT_USERNAME,
        ROOT_DEFAULT_PASSWORD,
        display_name="Root User",
        role=Role.ROOT,
        quota=ROOT_QUOTA,
        access_token=access_token,
    )
    logger.warning(
        "no user exists, created a root user: username is root, password is 123456. "
        "CHANGE THIS PASSWORD NOW."
    )
    initial_key = settings.INITIAL_ROOT_TOKEN.removeprefix("sk-")
    if initial_key:
        ApiKey.objects.create(
            user=root,
            key=initial_key,
            name=INITIAL_ROOT_TOKEN_NAME,
            unlimited_quota=True,
            remain_quota=ROOT_QUOTA,
            expired_time=-1,
            created_time=int(time.time()),
        )
    return root
