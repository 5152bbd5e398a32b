from __future__ import annotations

import pytest

from oneapi import caching, options
from oneapi.models import CacheEvent, Option

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_snapshot():
    # The snapshot is process-global; a previous test's rolled-back writes must not leak.
    caching.run_handlers(caching.OPTIONS, "")
    yield
    caching.run_handlers(caching.OPTIONS, "")


def test_defaults_when_table_is_empty():
    assert Option.objects.count() == 0
    assert options.get_str("SystemName") == "One API"
    assert options.get_int("QuotaPerUnit") == 500000
    assert options.get_str("QuotaPerUnit") == "500000"
    assert options.get_int("RetryTimes") == 0
    assert options.get_json("GroupRatio") == {"default": 1, "vip": 1, "svip": 1}
    assert options.get_bool("PasswordLoginEnabled") is True
    assert options.get_bool("EmailVerificationEnabled") is False
    assert options.get_float("QuotaPerUnit") == 500000.0


def test_unknown_key_reads_as_empty():
    assert options.get_str("NoSuchOption") == ""
    assert options.get_int("NoSuchOption") == 0
    assert options.get_bool("NoSuchOption") is False
    assert options.get_json("NoSuchOption") == {}


def test_unparsable_values_fall_back():
    options.set_option("RetryTimes", "lots")
    options.set_option("GroupRatio", "{not json")
    assert options.get_int("RetryTimes") == 0
    assert options.get_float("RetryTimes") == 0.0
    assert options.get_json("GroupRatio") == {}


def test_set_option_is_seen_immediately_and_writes_one_event():
    assert options.get_str("SystemName") == "One API"  # warm the snapshot
    assert options.get_int("RetryTimes") == 0
    assert options.get_bool("RegisterEnabled") is True
    events_before = CacheEvent.objects.count()

    options.set_option("SystemName", "My Gateway")
    options_events = list(CacheEvent.objects.values_list("kind", "ident"))
    assert CacheEvent.objects.count() == events_before + 1
    assert options_events[-1] == ("options", "")
    assert options.get_str("SystemName") == "My Gateway"
    assert Option.objects.get(key="SystemName").value == "My Gateway"

    options.set_option("RetryTimes", "3")
    assert options.get_int("RetryTimes") == 3
    options.set_option("RegisterEnabled", "false")
    assert options.get_bool("RegisterEnabled") is False
    assert CacheEvent.objects.filter(kind="options").count() == events_before + 3


def test_set_option_overwrites_existing_row():
    options.set_option("Notice", "one")
    options.set_option("Notice", "two")
    assert Option.objects.filter(key="Notice").count() == 1
    assert options.get_str("Notice") == "two"


def test_reads_come_from_the_snapshot_until_invalidated():
    assert options.get_str("SystemName") == "One API"
    assert options.get_int("RetryTimes") == 0
    Option.objects.update_or_create(key="SystemName", defaults={"value": "Changed In DB"})
    Option.objects.update_or_create(key="RetryTimes", defaults={"value": "5"})
    assert options.get_str("SystemName") == "One API"
    assert options.get_int("RetryTimes") == 0

    caching.run_handlers("options", "")
    assert options.get_str("SystemName") == "Changed In DB"
    assert options.get_int("RetryTimes") == 5


def test_warm_reads_do_no_queries(django_assert_num_queries):
    options.get_str("SystemName")
    options.get_int("QuotaPerUnit")
    with django_assert_num_queries(0):
        assert options.get_str("SystemName") == "One API"
        assert options.get_int("QuotaPerUnit") == 500000
        assert options.get_bool("DisplayInCurrencyEnabled") is True
        assert options.get_json("GroupRatio") == {"default": 1, "vip": 1, "svip": 1}
        assert options.all_options()["SystemName"] == "One API"


def test_cold_read_loads_once(django_assert_num_queries):
    with django_assert_num_queries(1):
        options.get_str("SystemName")
        options.get_str("Logo")
        options.get_int("QuotaPerUnit")


def test_all_options_is_a_copy():
    values = options.all_options()
    values["SystemName"] = "mutated"
    assert options.get_str("SystemName") == "One API"
