from __future__ import annotations

from django.db import models


class Option(models.Model):
    """One API's key/value settings table; every value is a string."""

    key = models.CharField(max_length=64, primary_key=True)
    value = models.TextField(blank=True, default="")

    class Meta:
        db_table = "options"

    def __str__(self) -> str:
        return self.key


class CacheEvent(models.Model):
    """A write another process must know about: processes poll this table for new ids.

    It is the cross-process invalidation bus of the embedded default (no Redis); with Redis the
    same events also go out over pub/sub. Rows are pruned by a periodic task.
    """

    kind = models.CharField(max_length=32)
    ident = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "cache_events"

    def __str__(self) -> str:
        return f"{self.kind}:{self.ident}"
