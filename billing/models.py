from __future__ import annotations

from django.conf import settings
from django.db import models


class KeyStatus(models.IntegerChoices):
    ENABLED = 1, "enabled"
    DISABLED = 2, "disabled"
    EXPIRED = 3, "expired"
    EXHAUSTED = 4, "exhausted"


class ApiKey(models.Model):
    """An API key ("token" in One API): `sk-` + key. Quota fields are integers."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="keys"
    )
    key = models.CharField(max_length=48, unique=True)
    status = models.IntegerField(choices=KeyStatus.choices, default=KeyStatus.ENABLED)
    name = models.CharField(max_length=64, blank=True, default="", db_index=True)
    created_time = models.BigIntegerField(default=0)
    accessed_time = models.BigIntegerField(default=0)
    expired_time = models.BigIntegerField(default=-1)  # unix seconds; -1 = never
    remain_quota = models.BigIntegerField(default=0)
    unlimited_quota = models.BooleanField(default=False)
    used_quota = models.BigIntegerField(default=0)
    request_count = models.BigIntegerField(default=0)
    subnet = models.CharField(max_length=1024, blank=True, default="")  # comma-separated CIDRs
    # Rate limits of this key (relay.ratelimit); 0 = unlimited.
    rpm_limit = models.IntegerField(default=0)
    tpm_limit = models.IntegerField(default=0)
    concurrency_limit = models.IntegerField(default=0)

    # Declared last: the name shadows django.db.models in the class body.
    models = models.TextField(blank=True, default="")  # comma-separated whitelist; empty = all

    class Meta:
        db_table = "tokens"

    def __str__(self) -> str:
        return self.name


class LogType(models.IntegerChoices):
    UNKNOWN = 0, "unknown"
    TOPUP = 1, "topup"
    CONSUME = 2, "consume"
    MANAGE = 3, "manage"
    SYSTEM = 4, "system"
    TEST = 5, "test"


class Log(models.Model):
    """One API's `logs` row. No foreign keys: it may live in another database (LOG_SQL_DSN)."""

    user_id = models.IntegerField(default=0, db_index=True)
    created_at = models.BigIntegerField(default=0)
    type = models.IntegerField(choices=LogType.choices, default=LogType.UNKNOWN)
    content = models.TextField(blank=True, default="")
    username = models.CharField(max_length=64, blank=True, default="")
    token_name = models.CharField(max_length=64, blank=True, default="", db_index=True)
    model_name = models.CharField(max_length=255, blank=True, default="")
    quota = models.BigIntegerField(default=0)
    prompt_tokens = models.IntegerField(default=0)
    completion_tokens = models.IntegerField(default=0)
    channel_id = models.IntegerField(default=0, db_index=True)
    # Unique so a replayed usage journal can never write the same request's log twice.
    request_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    elapsed_time = models.IntegerField(default=0)  # milliseconds
    is_stream = models.BooleanField(default=False)
    system_prompt_reset = models.BooleanField(default=False)

    class Meta:
        db_table = "logs"
        indexes = [
            models.Index(fields=["created_at", "type"], name="logs_created_type"),
            models.Index(fields=["model_name", "username"], name="logs_model_username"),
        ]

    def __str__(self) -> str:
        return f"log #{self.pk} {self.model_name}"


class RedemptionStatus(models.IntegerChoices):
    ENABLED = 1, "enabled"
    DISABLED = 2, "disabled"
    USED = 3, "used"


class Redemption(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="created_redemptions"
    )
    key = models.CharField(max_length=32, unique=True)
    status = models.IntegerField(choices=RedemptionStatus.choices, default=RedemptionStatus.ENABLED)
    name = models.CharField(max_length=64, blank=True, default="", db_index=True)
    quota = models.BigIntegerField(default=100)
    created_time = models.BigIntegerField(default=0)
    redeemed_time = models.BigIntegerField(default=0)
    redeemed_by = models.IntegerField(default=0)

    class Meta:
        db_table = "redemptions"

    def __str__(self) -> str:
        return self.name


class JournalMark(models.Model):
    """How far a usage journal file has been applied to the database (see billing.journal).

    Advanced in the same transaction as the quota deltas it covers, so each entry of a journal
    is applied exactly once, even when a crashed process's journal is replayed later.
    """

    journal = models.CharField(max_length=255, unique=True)
    offset = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "journal_marks"

    def __str__(self) -> str:
        return f"{self.journal}@{self.offset}"
