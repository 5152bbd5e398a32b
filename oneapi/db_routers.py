"""Send consumption logs to the "logs" database when LOG_SQL_DSN is set (One API's LOG_DB)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

_LOG_MODELS = {("billing", "log")}


def _is_log_model(model: Any) -> bool:
    return (model._meta.app_label, model._meta.model_name) in _LOG_MODELS


class LogDatabaseRouter:
    def _alias(self, model: Any) -> str | None:
        if _is_log_model(model) and "logs" in settings.DATABASES:
            return "logs"
        return None

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return self._alias(model)

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return self._alias(model)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any):
        if "logs" not in settings.DATABASES:
            return None
        is_log = (app_label, model_name) in _LOG_MODELS
        if db == "logs":
            return is_log
        return False if is_log else None
