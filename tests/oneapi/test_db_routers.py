from __future__ import annotations

import pytest

from accounts.models import User
from billing.models import Log
from oneapi.db_routers import LogDatabaseRouter

# The router reads settings.DATABASES at call time; swapping it here touches no connection.
pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

router = LogDatabaseRouter()


def test_without_log_database_everything_uses_the_default(settings) -> None:
    settings.DATABASES = {"default": settings.DATABASES["default"]}

    assert router.db_for_write(Log) is None
    assert router.db_for_read(Log) is None
    assert router.allow_migrate("default", "billing", "log") is None


@pytest.mark.parametrize(
    ("db", "app_label", "model_name", "expected"),
    [
        ("logs", "billing", "log", True),
        ("logs", "accounts", "user", False),
        ("default", "billing", "log", False),
        ("default", "accounts", "user", None),
    ],
)
def test_with_log_database_logs_live_only_there(settings, db, app_label, model_name, expected):
    settings.DATABASES = {**settings.DATABASES, "logs": dict(settings.DATABASES["default"])}

    assert router.allow_migrate(db, app_label, model_name) is expected
    assert router.db_for_write(Log) == "logs"
    assert router.db_for_read(User) is None
