from __future__ import annotations

from typing import ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models


class Role(models.IntegerChoices):
    GUEST = 0, "guest"
    COMMON = 1, "common"
    ADMIN = 10, "admin"
    ROOT = 100, "root"


class UserStatus(models.IntegerChoices):
    ENABLED = 1, "enabled"
    DISABLED = 2, "disabled"
    DELETED = 3, "deleted"


class UserManager(BaseUserManager["User"]):
    def create_user(self, username: str, password: str | None = None, **fields: object) -> User:
        user = self.model(username=username, **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, username: str, password: str | None = None, **fields: object):
        fields.setdefault("role", Role.ROOT)
        return self.create_user(username, password, **fields)


class User(AbstractBaseUser):
    """One API's `users` row. Quota fields are integers (500000 = 1 USD)."""

    username = models.CharField(max_length=64, unique=True)
    display_name = models.CharField(max_length=64, blank=True, default="")
    role = models.IntegerField(choices=Role.choices, default=Role.COMMON)
    status = models.IntegerField(choices=UserStatus.choices, default=UserStatus.ENABLED)
    email = models.CharField(max_length=254, blank=True, default="", db_index=True)
    github_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    wechat_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    lark_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    oidc_id = models.CharField(max_length=128, blank=True, default="", db_index=True)
    access_token = models.CharField(max_length=32, unique=True, null=True, blank=True)
    quota = models.BigIntegerField(default=0)
    used_quota = models.BigIntegerField(default=0)
    request_count = models.IntegerField(default=0)
    group = models.CharField(max_length=32, default="default")
    aff_code = models.CharField(max_length=32, unique=True, null=True, blank=True)
    inviter_id = models.IntegerField(default=0)

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects = UserManager()

    class Meta:
        db_table = "users"

    def __str__(self) -> str:
        return self.username

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.status == UserStatus.ENABLED

    @property
    def is_admin(self) -> bool:
        return self.role >= Role.ADMIN

    @property
    def is_root(self) -> bool:
        return self.role >= Role.ROOT
