from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from accounts.bootstrap import ensure_root_account
from accounts.models import Role, User
from billing.models import ApiKey

pytestmark = pytest.mark.django_db

KEY = "a" * 24 + "B" * 24  # 48 characters, as One API generates
ACCESS_TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_initial_tokens(settings):
    settings.INITIAL_ROOT_TOKEN = ""
    settings.INITIAL_ROOT_ACCESS_TOKEN = ""


def test_creates_root_on_empty_table():
    root = ensure_root_account()
    assert root is not None
    assert User.objects.count() == 1
    stored = User.objects.get()
    assert stored.pk == root.pk
    assert stored.username == "root"
    assert stored.display_name == "Root User"
    assert stored.role == Role.ROOT == 100
    assert stored.quota == 500000000000000
    assert stored.check_password("123456")
    assert not stored.check_password("1234567")
    assert stored.is_root
    assert stored.is_active
    assert len(stored.access_token) == 32
    assert ApiKey.objects.count() == 0


def test_access_token_from_setting(settings):
    settings.INITIAL_ROOT_ACCESS_TOKEN = ACCESS_TOKEN
    ensure_root_account()
    assert User.objects.get().access_token == ACCESS_TOKEN


@pytest.mark.parametrize("initial", [KEY, f"sk-{KEY}"])
def test_initial_root_token(settings, initial):
    settings.INITIAL_ROOT_TOKEN = initial
    root = ensure_root_account()
    assert ApiKey.objects.count() == 1
    key = ApiKey.objects.get()
    assert key.key == KEY
    assert key.user_id == root.pk
    assert key.name == "Initial Root Token"
    assert key.unlimited_quota is True
    assert key.expired_time == -1
    assert key.remain_quota == 500000000000000
    assert key.created_time > 0


def test_second_call_creates_nothing(settings):
    settings.INITIAL_ROOT_TOKEN = KEY
    settings.INITIAL_ROOT_ACCESS_TOKEN = ACCESS_TOKEN
    assert ensure_root_account() is not None
    assert ensure_root_account() is None
    assert ensure_root_account() is None
    assert User.objects.count() == 1
    assert ApiKey.objects.count() == 1


def test_no_key_when_initial_root_token_empty():
    ensure_root_account()
    assert User.objects.count() == 1
    assert ApiKey.objects.count() == 0


def test_sk_prefix_alone_creates_no_key(settings):
    settings.INITIAL_ROOT_TOKEN = "sk-"
    ensure_root_account()
    assert ApiKey.objects.count() == 0


def test_nothing_when_a_user_exists(settings):
    settings.INITIAL_ROOT_TOKEN = KEY
    User.objects.create_user("alice", "pw")
    assert ensure_root_account() is None
    assert list(User.objects.values_list("username", flat=True)) == ["alice"]
    assert ApiKey.objects.count() == 0


def test_bootstrap_command():
    out = StringIO()
    call_command("bootstrap", stdout=out)
    assert out.getvalue() == "root account created\n"
    assert User.objects.filter(username="root").count() == 1

    out = StringIO()
    call_command("bootstrap", stdout=out)
    assert out.getvalue() == "users exist; nothing to do\n"
    assert User.objects.count() == 1
