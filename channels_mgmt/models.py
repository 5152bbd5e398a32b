from __future__ import annotations

from django.db import models


class ChannelStatus(models.IntegerChoices):
    UNKNOWN = 0, "unknown"
    ENABLED = 1, "enabled"
    MANUALLY_DISABLED = 2, "manually disabled"
    AUTO_DISABLED = 3, "auto disabled"


class Channel(models.Model):
    """An upstream account: One API's `channels` row, with the same type numbers."""

    type = models.IntegerField(default=1)
    key = models.TextField(blank=True, default="")
    status = models.IntegerField(choices=ChannelStatus.choices, default=ChannelStatus.ENABLED)
    name = models.CharField(max_length=128, blank=True, default="", db_index=True)
    weight = models.PositiveIntegerField(default=1)
    created_time = models.BigIntegerField(default=0)
    test_time = models.BigIntegerField(default=0)
    response_time = models.IntegerField(default=0)  # milliseconds
    base_url = models.CharField(max_length=512, blank=True, default="")
    other = models.TextField(blank=True, default="")
    balance = models.FloatField(default=0)  # provider-reported, USD; display only
    balance_updated_time = models.BigIntegerField(default=0)
    group = models.CharField(max_length=255, default="default")  # comma-separated
    used_quota = models.BigIntegerField(default=0)
    request_count = models.BigIntegerField(default=0)
    model_mapping = models.TextField(blank=True, default="")  # JSON {"requested": "actual"}
    priority = models.BigIntegerField(default=0)
    config = models.TextField(blank=True, default="")  # JSON ChannelConfig
    system_prompt = models.TextField(blank=True, default="")
    test_model = models.CharField(max_length=128, blank=True, default="")

    # Declared last: the name shadows django.db.models in the class body.
    models = models.TextField(blank=True, default="")  # comma-separated

    class Meta:
        db_table = "channels"

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"

    def model_list(self) -> list[str]:
        return [name.strip() for name in self.models.split(",") if name.strip()]

    def group_list(self) -> list[str]:
        return [name.strip() for name in self.group.split(",") if name.strip()]


class Ability(models.Model):
    """The routing index: one row per (group, model, channel), derived from channels only."""

    group = models.CharField(max_length=32)
    model = models.CharField(max_length=255)
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="abilities")
    enabled = models.BooleanField(default=True)
    priority = models.BigIntegerField(default=0, db_index=True)
    weight = models.PositiveIntegerField(default=1)

    class Meta:
        db_table = "abilities"
        constraints = [
            models.UniqueConstraint(
                fields=["group", "model", "channel"], name="ability_group_model_channel"
            )
        ]

    def __str__(self) -> str:
        return f"{self.group}/{self.model} -> {self.channel_id}"
