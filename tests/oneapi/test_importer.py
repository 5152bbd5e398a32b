"""`manage.py import_one_api`: a One API database (GORM schema, real rows) copied into ours."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.hashers import check_password
from django.core.management import CommandError, call_command

from accounts.models import User
from billing.models import ApiKey, Log, Redemption
from channels_mgmt.models import Ability, Channel
from channels_mgmt.selection import load_routing_table, routing_table
from oneapi import options
from oneapi.importer import Report, open_source, run_import
from oneapi.models import CacheEvent, Option
from relay.auth import cached_key, load_key
from tests.conftest import require_service
from tests.fakes import one_api_schema as one_api

pytestmark = pytest.mark.django_db

SOURCE_DATABASE = "one_api_import_source"
PG_HOST = os.environ.get("TEST_POSTGRES_HOST", "127.0.0.1")
MYSQL_HOST = os.environ.get("TEST_MYSQL_HOST", "127.0.0.1")

# What the sample database holds, as (created, skipped) per table.
EXPECTED_CREATED = {
    "users": 3,
    "tokens": 4,  # the fifth belongs to a user that no longer exists
    "channels": 3,
    "abilities": 7,  # channel 1: 2 groups x 2 models; channel 3: 1 x 2; channel 4: 1 x 1
    "redemptions": 2,
    "options": 5,
    "logs": 6,
}


@pytest.fixture
def source_file(tmp_path: Path) -> Path:
    return one_api.build_sqlite(tmp_path / "one-api.db")


@pytest.fixture
def bcrypt_hasher(settings) -> None:
    """What production settings must hold for imported One API passwords to verify."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.BCryptPasswordHasher",
    ]


def run(source: str | Path, *extra: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_one_api", str(source), *extra, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def import_report(source: str | Path, *, dry_run: bool = False) -> Report:
    opened = open_source(str(source))
    try:
        return run_import(opened, dry_run=dry_run)
    finally:
        opened.close()


def created(report: Report) -> dict[str, int]:
    return {table: counts.created for table, counts in report.counts.items()}


def assert_imported(report: Report) -> None:
    assert created(report) == EXPECTED_CREATED
    assert report.counts["tokens"].skipped == 1
    assert all(c.updated == 0 and c.unchanged == 0 for c in report.counts.values())


# --- counts and idempotence ------------------------------------------------------------------


def test_import_creates_every_table(source_file: Path) -> None:
    assert_imported(import_report(source_file))
    assert User.objects.count() == 3
    assert ApiKey.objects.count() == 4
    assert Channel.objects.count() == 3
    assert Ability.objects.count() == 7
    assert Redemption.objects.count() == 2
    assert Option.objects.count() == 5
    assert Log.objects.count() == 6


def test_command_prints_counts_and_warnings(source_file: Path) -> None:
    out, err = run(source_file)
    assert "Imported:" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert lines["users"][:3] == ["3", "0", "0"]
    assert lines["tokens"] == ["4", "0", "0", "1", "skipped"]
    assert lines["logs"][:3] == ["6", "0", "0"]
    assert "tokens: skipped 1 whose owner does not exist" in err
    assert "logs: 1 repeated a request id" in err


def test_second_run_changes_nothing(source_file: Path) -> None:
    import_report(source_file)
    snapshot = {
        model: list(model.objects.order_by("pk").values())
        for model in (User, ApiKey, Channel, Ability, Redemption, Option, Log)
    }
    report = import_report(source_file)
    for table, counts in report.counts.items():
        assert (counts.created, counts.updated, counts.deleted) == (0, 0, 0), table
        assert counts.unchanged == EXPECTED_CREATED[table], table
    for model, rows in snapshot.items():
        assert list(model.objects.order_by("pk").values()) == rows, model.__name__


def test_rows_of_ours_with_the_same_id_are_updated(source_file: Path) -> None:
    ours = User.objects.create_user("root", "local-password", id=1, role=100, quota=1)
    report = import_report(source_file)
    assert report.counts["users"].updated == 1
    assert report.counts["users"].created == 2
    ours.refresh_from_db()
    assert ours.quota == 500_000_000_000_000
    assert ours.password.startswith("bcrypt$$2a$10$")


def test_a_source_change_is_an_update(source_file: Path) -> None:
    import_report(source_file)
    with sqlite3.connect(source_file) as connection:
        connection.execute("UPDATE users SET quota = 7 WHERE id = 2")
        connection.execute("UPDATE channels SET models = 'gpt-4o' WHERE id = 1")
    report = import_report(source_file)
    assert report.counts["users"].updated == 1
    assert report.counts["channels"].updated == 1
    # Channel 1 lost gpt-4o-mini in both of its groups.
    assert report.counts["abilities"].deleted == 2
    assert User.objects.get(pk=2).quota == 7
    assert not Ability.objects.filter(channel_id=1, model="gpt-4o-mini").exists()


# --- what each table maps to -----------------------------------------------------------------


def test_users_map_with_empty_unique_fields_as_null(source_file: Path) -> None:
    import_report(source_file)
    root, alice, deleted = User.objects.order_by("pk")
    assert (root.pk, root.role, root.aff_code) == (1, 100, None)
    assert root.access_token == "0123456789abcdef0123456789abcdef"
    assert (alice.pk, alice.username, alice.group, alice.github_id) == (
        2,
        "alice",
        "vip",
        "alice-gh",
    )
    assert (alice.access_token, alice.aff_code, alice.inviter_id) == (None, "Xy9z", 1)
    assert (alice.quota, alice.used_quota, alice.request_count) == (2_000_000, 37_500, 12)
    assert (deleted.pk, deleted.status) == (5, 3)


def test_tokens_keep_key_strings_and_limits(source_file: Path) -> None:
    import_report(source_file)
    limited = ApiKey.objects.get(key=one_api.LIMITED_KEY)
    assert (limited.pk, limited.user_id, limited.unlimited_quota) == (3, 2, False)
    assert (limited.remain_quota, limited.expired_time) == (250_000, 1_900_000_000)
    assert limited.models == "gpt-4o-mini,gpt-4o"
    assert limited.subnet == "10.0.0.0/8,192.168.1.0/24"
    root_key = ApiKey.objects.get(key=one_api.ROOT_KEY)
    assert (root_key.unlimited_quota, root_key.models, root_key.subnet) == (True, "", "")
    assert not ApiKey.objects.filter(key=one_api.ORPHAN_KEY).exists()


def test_token_id_taken_by_another_key_gets_a_new_id(source_file: Path) -> None:
    owner = User.objects.create_user("someone-else", "pw", id=50)
    ApiKey.objects.create(id=2, user=owner, key="x" * 48, name="ours")
    import_report(source_file)
    moved = ApiKey.objects.get(key=one_api.COMMON_KEY)
    assert moved.pk > 7 and moved.user_id == 2
    assert ApiKey.objects.get(pk=2).key == "x" * 48
    assert import_report(source_file).counts["tokens"].unchanged == 4


def test_over_long_values(source_file: Path) -> None:
    """SQLite does not enforce One API's lengths; our PostgreSQL and MySQL columns do."""
    with sqlite3.connect(source_file) as connection:
        connection.execute("UPDATE channels SET name = ? WHERE id = 1", ("n" * 300,))
        # An INITIAL_ROOT_TOKEN of any length lands in char(48) on SQLite.
        connection.execute("UPDATE tokens SET key = ? WHERE id = 1", ("k" * 60,))
    report = import_report(source_file)
    assert Channel.objects.get(pk=1).name == "n" * 128
    assert report.counts["tokens"].skipped == 2
    assert "channels: truncated 1 row(s) with a longer name (max 128)" in report.warnings
    assert "tokens: skipped 1 row(s) with a longer key (max 48)" in report.warnings


def test_keys_authenticate_through_the_relay_loader(source_file: Path) -> None:
    import_report(source_file)
    assert load_key(one_api.COMMON_KEY).user_id == 2
    assert load_key(one_api.ROOT_KEY).user_id == 1
    assert load_key(one_api.DELETED_KEY).user_id == 5
    assert load_key(one_api.ORPHAN_KEY) is None


def test_channels_map_nullable_columns_to_our_defaults(source_file: Path) -> None:
    import_report(source_file)
    openai, anthropic, broken = Channel.objects.order_by("pk")
    assert openai.pk == 1
    assert (openai.base_url, openai.other, openai.model_mapping) == ("", "", "")
    assert (openai.priority, openai.weight, openai.system_prompt) == (0, 1, "")
    assert (openai.balance, openai.used_quota, openai.group) == (12.5, 1_250, "default,vip")
    assert anthropic.pk == 3
    assert json.loads(anthropic.model_mapping) == {"gpt-4o": "claude-3-5-sonnet-20241022"}
    assert (anthropic.priority, anthropic.weight) == (10, 5)
    assert anthropic.system_prompt == "You are helpful."
    assert (broken.pk, broken.status, broken.weight) == (4, 3, 1)


def test_abilities_match_the_channels_and_route(source_file: Path) -> None:
    import_report(source_file)
    table = load_routing_table()
    assert table.models_for_group("vip") == ["claude-3-5-sonnet-20241022", "gpt-4o", "gpt-4o-mini"]
    assert table.models_for_group("default") == ["gpt-4o", "gpt-4o-mini"]
    # Higher priority first; the auto-disabled channel 4 is not served.
    assert [c.id for c in table.candidates[("vip", "gpt-4o")]] == [3, 1]
    assert [c.id for c in table.candidates[("default", "gpt-4o-mini")]] == [1]
    assert table.channels[3].model_mapping == {"gpt-4o": "claude-3-5-sonnet-20241022"}
    assert Ability.objects.get(channel_id=4).enabled is False


def test_inconsistent_source_abilities_are_rebuilt_from_channels(source_file: Path) -> None:
    with sqlite3.connect(source_file) as connection:
        connection.execute("DELETE FROM abilities WHERE channel_id = 3")
        connection.execute("INSERT INTO abilities VALUES ('default', 'ghost', 9, 1, 0)")
    report = import_report(source_file)
    assert report.counts["abilities"].created == 7
    assert not Ability.objects.filter(model="ghost").exists()
    assert any("rebuilt from the channels" in warning for warning in report.warnings)


def test_redemptions_keep_creator_and_state(source_file: Path) -> None:
    import_report(source_file)
    unused, used = Redemption.objects.order_by("pk")
    assert (unused.key, unused.status, unused.user_id) == (
        "8f14e45fceea167a5a36dedd4bea2543",
        1,
        1,
    )
    assert (used.status, used.redeemed_time, used.quota) == (3, 1_700_020_000, 500_000)


def test_options_are_applied(source_file: Path) -> None:
    import_report(source_file)
    assert options.get_json("ModelRatio") == one_api.MODEL_RATIO
    assert Option.objects.get(key="SystemName").value == "My One API"


def test_logs_keep_ids_and_first_request_id(source_file: Path) -> None:
    import_report(source_file)
    consume = Log.objects.get(pk=3)
    assert (consume.type, consume.user_id, consume.channel_id, consume.quota) == (2, 2, 1, 37_500)
    assert (consume.prompt_tokens, consume.completion_tokens) == (1_000, 250)
    assert (consume.is_stream, consume.elapsed_time) == (True, 812)
    assert consume.request_id == "2024111112000087654321"
    # Two test logs of one run share a request id; ours are unique, so the second has none.
    assert Log.objects.get(pk=4).request_id == "2024111112000011112222"
    assert Log.objects.get(pk=5).request_id is None
    assert Log.objects.get(pk=5).system_prompt_reset is True
    assert Log.objects.get(pk=1).request_id is None


def test_new_rows_do_not_collide_with_imported_ids(source_file: Path) -> None:
    import_report(source_file)
    assert User.objects.create_user("newcomer", "pw").pk > 5
    assert Log.objects.create(content="after import").pk > 6
    assert Channel.objects.create(name="new").pk > 4


def test_caches_are_invalidated(source_file: Path) -> None:
    # Warm every cache the relay reads with the empty database's state.
    assert load_key(one_api.COMMON_KEY) is None
    assert cached_key(one_api.COMMON_KEY) == (True, None)
    assert routing_table().channels == {}
    assert options.get_json("ModelRatio") != one_api.MODEL_RATIO
    import_report(source_file)
    assert cached_key(one_api.COMMON_KEY) == (False, None)
    assert sorted(routing_table().channels) == [1, 3, 4]
    assert options.get_json("ModelRatio") == one_api.MODEL_RATIO
    # Other processes hear it through the event table.
    events = set(CacheEvent.objects.values_list("kind", "ident"))
    assert {("channels", ""), ("options", ""), ("key", "*"), ("user", "*")} <= events


# --- passwords -------------------------------------------------------------------------------


def test_bcrypt_passwords_verify(source_file: Path, bcrypt_hasher: None) -> None:
    import_report(source_file)
    root = User.objects.get(pk=1)
    assert root.password.startswith("bcrypt$$2a$10$")
    assert check_password(one_api.ROOT_PASSWORD, root.password)
    assert not check_password("wrong-password", root.password)
    alice = User.objects.get(pk=2)
    assert alice.check_password(one_api.COMMON_PASSWORD)
    # Django re-hashes with the preferred hasher at that first login.
    alice.refresh_from_db()
    assert not alice.password.startswith("bcrypt$")
    assert alice.check_password(one_api.COMMON_PASSWORD)


# --- dry run, all or nothing, errors ---------------------------------------------------------


def test_dry_run_writes_nothing(source_file: Path) -> None:
    out, _ = run(source_file, "--dry-run")
    assert "Dry run, nothing written" in out
    assert out.splitlines()[2].split()[:2] == ["users", "3"]
    for model in (User, ApiKey, Channel, Ability, Redemption, Option, Log, CacheEvent):
        assert not model.objects.exists(), model.__name__
    assert_imported(import_report(source_file, dry_run=True))


def test_a_conflict_rolls_everything_back(source_file: Path) -> None:
    User.objects.create_user("alice", "pw", id=7)  # One API's alice is id 2
    with pytest.raises(CommandError, match="users: a row conflicts"):
        run(source_file)
    assert User.objects.count() == 1
    for model in (ApiKey, Channel, Ability, Option, Log):
        assert not model.objects.exists(), model.__name__


def test_not_a_one_api_database(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE users (id integer, name text)")
    with pytest.raises(CommandError, match="is not a One API database: missing tables tokens"):
        run(other)


def test_not_a_database_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not SQLite\n" * 100)
    with pytest.raises(CommandError, match="is not a SQLite database"):
        run(text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such file"):
        run(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()


def test_unreachable_server_names_it_without_the_password() -> None:
    with pytest.raises(CommandError, match="cannot connect to the postgresql") as excinfo:
        run("postgres://oneapi:hunter2@127.0.0.1:1/oneapi")
    assert "hunter2" not in str(excinfo.value)
    with pytest.raises(CommandError, match="cannot connect to the mysql"):
        run("oneapi:hunter2@tcp(127.0.0.1:1)/oneapi?charset=utf8mb4&parseTime=True&loc=Local")


def test_bad_dsn() -> None:
    with pytest.raises(CommandError, match="unsupported scheme"):
        run("redis://127.0.0.1/0")


def test_separate_log_database(source_file: Path, tmp_path: Path) -> None:
    log_db = tmp_path / "logs.db"
    with sqlite3.connect(log_db) as connection:
        connection.execute(one_api._create_table_sql("logs", "sqlite"))
        connection.execute(
            "INSERT INTO logs (id, user_id, created_at, type, content) VALUES (40, 2, 1, 4, 'x')"
        )
    run(source_file, "--log-source", str(log_db))
    assert Log.objects.get().pk == 40


def test_log_source_without_logs(source_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE things (id integer)")
    with pytest.raises(CommandError, match="has no One API logs table"):
        run(source_file, "--log-source", str(other))
    assert not User.objects.exists()


# --- server sources --------------------------------------------------------------------------


@pytest.fixture
def postgres_source() -> Iterator[str]:
    require_service("PostgreSQL", PG_HOST, 5432)
    import psycopg

    with psycopg.connect(host=PG_HOST, user="postgres", dbname="postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {SOURCE_DATABASE}")
        c.execute(f"CREATE DATABASE {SOURCE_DATABASE}")
    try:
        with psycopg.connect(host=PG_HOST, user="postgres", dbname=SOURCE_DATABASE) as source:
            one_api.build(source, "postgresql")
        yield f"postgres://postgres@{PG_HOST}:5432/{SOURCE_DATABASE}?sslmode=disable"
    finally:
        with psycopg.connect(
            host=PG_HOST, user="postgres", dbname="postgres", autocommit=True
        ) as c:
            c.execute(f"DROP DATABASE IF EXISTS {SOURCE_DATABASE} WITH (FORCE)")


@pytest.fixture
def mysql_source() -> Iterator[str]:
    require_service("MySQL", MYSQL_HOST, 3306)
    import pymysql

    admin = pymysql.connect(host=MYSQL_HOST, user="root", autocommit=True)
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {SOURCE_DATABASE}")
        cursor.execute(f"CREATE DATABASE {SOURCE_DATABASE} CHARACTER SET utf8mb4")
    try:
        source = pymysql.connect(host=MYSQL_HOST, user="root", database=SOURCE_DATABASE)
        try:
            one_api.build(source, "mysql")
        finally:
            source.close()
        # One API's own SQL_DSN form, Go driver parameters included.
        yield f"root:@tcp({MYSQL_HOST}:3306)/{SOURCE_DATABASE}?charset=utf8mb4&parseTime=True"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {SOURCE_DATABASE}")
        admin.close()


@pytest.mark.integration
def test_postgresql_source(postgres_source: str, bcrypt_hasher: None) -> None:
    assert_imported(import_report(postgres_source))
    # char(32)/char(48) come back space-padded from PostgreSQL; the keys must not.
    assert load_key(one_api.COMMON_KEY).user_id == 2
    assert User.objects.get(pk=2).access_token is None
    assert Channel.objects.get(pk=1).base_url == ""
    assert options.get_json("ModelRatio") == one_api.MODEL_RATIO
    assert check_password(one_api.ROOT_PASSWORD, User.objects.get(pk=1).password)
    second = import_report(postgres_source)
    assert all(c.created == c.updated == 0 for c in second.counts.values())


@pytest.mark.integration
def test_mysql_source_from_a_go_dsn(mysql_source: str) -> None:
    assert_imported(import_report(mysql_source))
    assert load_key(one_api.LIMITED_KEY).user_id == 2
    assert Log.objects.get(pk=3).is_stream is True
    assert [c.id for c in load_routing_table().candidates[("vip", "gpt-4o")]] == [3, 1]
    second = import_report(mysql_source)
    assert all(c.created == c.updated == 0 for c in second.counts.values())
