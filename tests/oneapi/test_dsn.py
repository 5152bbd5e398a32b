from __future__ import annotations

import pytest

from oneapi.dsn import DSNError, parse_dsn

MYSQL_DEFAULT_OPTIONS = {
    "charset": "utf8mb4",
    "init_command": "SET sql_mode='STRICT_TRANS_TABLES'",
    "isolation_level": "read committed",
}
SECRET = "s3cr3t-Pa55"


def test_go_mysql_dsn_full():
    dsn = "root:pass@tcp(127.0.0.1:3306)/oneapi?charset=utf8mb4&parseTime=True&loc=Local"
    assert parse_dsn(dsn) == {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "oneapi",
        "USER": "root",
        "PASSWORD": "pass",
        "HOST": "127.0.0.1",
        "PORT": "3306",
        "OPTIONS": MYSQL_DEFAULT_OPTIONS,
    }


def test_go_mysql_dsn_charset_list_keeps_first():
    entry = parse_dsn("root:pass@tcp(h:3306)/db?charset=utf8,utf8mb4")
    assert entry["OPTIONS"]["charset"] == "utf8"


def test_go_mysql_dsn_empty_password():
    entry = parse_dsn("root:@tcp(localhost:3307)/db")
    assert entry == {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "db",
        "USER": "root",
        "PASSWORD": "",
        "HOST": "localhost",
        "PORT": "3307",
        "OPTIONS": MYSQL_DEFAULT_OPTIONS,
    }


def test_go_mysql_dsn_without_port():
    entry = parse_dsn("user@tcp(dbhost)/db")
    assert entry["USER"] == "user"
    assert entry["PASSWORD"] == ""
    assert entry["HOST"] == "dbhost"
    assert entry["PORT"] == "3306"
    assert entry["NAME"] == "db"


def test_go_mysql_dsn_unix_socket():
    entry = parse_dsn("user:p@unix(/run/mysqld.sock)/db")
    assert entry == {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "db",
        "USER": "user",
        "PASSWORD": "p",
        "HOST": "localhost",
        "PORT": "",
        "OPTIONS": {"unix_socket": "/run/mysqld.sock", **MYSQL_DEFAULT_OPTIONS},
    }


def test_postgres_url_unquotes_password_and_keeps_query():
    entry = parse_dsn("postgres://u:p%40x@h:5433/db?sslmode=disable")
    assert entry == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "db",
        "USER": "u",
        "PASSWORD": "p@x",
        "HOST": "h",
        "PORT": "5433",
        "OPTIONS": {"sslmode": "disable"},
    }


def test_postgresql_url_default_port():
    entry = parse_dsn("postgresql://u@h/db")
    assert entry == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "db",
        "USER": "u",
        "PASSWORD": "",
        "HOST": "h",
        "PORT": "5432",
        "OPTIONS": {},
    }


def test_mysql_url():
    entry = parse_dsn("mysql://u:p@h/db")
    assert entry == {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "db",
        "USER": "u",
        "PASSWORD": "p",
        "HOST": "h",
        "PORT": "3306",
        "OPTIONS": MYSQL_DEFAULT_OPTIONS,
    }


def test_sqlite_relative_path():
    entry = parse_dsn("sqlite:///data/x.db")
    assert entry["ENGINE"] == "django.db.backends.sqlite3"
    assert entry["NAME"] == "data/x.db"
    assert entry["OPTIONS"]["timeout"] == 3.0
    assert entry["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_sqlite_absolute_path():
    entry = parse_dsn("sqlite:////tmp/x.db")
    assert entry["ENGINE"] == "django.db.backends.sqlite3"
    assert entry["NAME"] == "/tmp/x.db"


def test_surrounding_whitespace_is_ignored():
    assert parse_dsn("  mysql://u:p@h/db \n") == parse_dsn("mysql://u:p@h/db")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        f"redis://u:{SECRET}@h/0",
        f"postgres://u:{SECRET}@/db",
        "postgres:///db",
        f"postgres://u:{SECRET}@h/",
        "postgres://h/",
        f"mysql://u:{SECRET}@h:notaport/db",
        "mysql://h:notaport/db",
        f"root:{SECRET}@tcp(h:abc)/db",
        "hello",
        f"root:{SECRET}@hello",
        "sqlite://",
        "sqlite:///",
    ],
)
def test_errors_name_the_variable_and_hide_the_password(value):
    with pytest.raises(DSNError) as excinfo:
        parse_dsn(value, variable="LOG_SQL_DSN")
    message = str(excinfo.value)
    assert "LOG_SQL_DSN" in message
    assert SECRET not in message


def test_default_variable_name_is_sql_dsn():
    with pytest.raises(DSNError, match="^SQL_DSN"):
        parse_dsn("hello")


def test_dsn_error_is_improperly_configured():
    from django.core.exceptions import ImproperlyConfigured

    assert issubclass(DSNError, ImproperlyConfigured)


def test_error_messages():
    with pytest.raises(DSNError, match="SQL_DSN is empty"):
        parse_dsn("")
    with pytest.raises(DSNError, match="unsupported scheme 'redis'"):
        parse_dsn("redis://h/0")
    with pytest.raises(DSNError, match="missing host"):
        parse_dsn("postgres:///db")
    with pytest.raises(DSNError, match="missing database name"):
        parse_dsn("postgres://h/")
    with pytest.raises(DSNError, match="bad port"):
        parse_dsn("mysql://h:notaport/db")
    with pytest.raises(DSNError, match="cannot parse"):
        parse_dsn("hello")
    with pytest.raises(DSNError, match="sqlite URLs look like"):
        parse_dsn("sqlite://")


def test_redacted_message_keeps_the_rest_of_the_dsn():
    with pytest.raises(DSNError) as excinfo:
        parse_dsn(f"mysql://u:{SECRET}@h:notaport/db")
    assert "mysql://u:***@h:notaport/db" in str(excinfo.value)


def test_go_mysql_dsn_password_with_at_sign():
    entry = parse_dsn("root:p@ss@tcp(h:3306)/db")
    assert entry["USER"] == "root"
    assert entry["PASSWORD"] == "p@ss"
    assert entry["HOST"] == "h"


@pytest.mark.parametrize(
    "value", ["root:abc@SecretTail@tcp(h:x)/db", "postgres://u:abc@SecretTail@h:x/db"]
)
def test_password_containing_at_sign_is_fully_redacted(value):
    with pytest.raises(DSNError) as excinfo:
        parse_dsn(value)
    assert "SecretTail" not in str(excinfo.value)
