"""Build a One API database as One API itself would: GORM's AutoMigrate DDL, real rows.

The columns and their types follow `model/*.go` of songquanpeng/one-api (HEAD 8df4a267), as
GORM's SQLite, PostgreSQL and MySQL drivers render each Go type (e.g. Go `int` is `integer`
on SQLite but `bigint` on PostgreSQL; `bool` is `numeric` on SQLite). Then sample rows a
running One API would have written are inserted:

    path = build_sqlite(tmp_path / "one-api.db")
    build(psycopg_connection, "postgresql")

The sample data is exposed as constants so tests can assert on it.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from pathlib import Path
from typing import Any

import bcrypt

__all__ = [
    "COMMON_KEY",
    "COMMON_PASSWORD",
    "DELETED_KEY",
    "ROOT_KEY",
    "ROOT_PASSWORD",
    "build",
    "build_sqlite",
    "create_schema",
    "insert_sample_rows",
]

# GORM type per Go field kind and dialect. "pk" is the `Id int` primary key.
_TYPES: dict[str, dict[str, str]] = {
    "pk": {"sqlite": "integer", "postgresql": "bigserial", "mysql": "bigint AUTO_INCREMENT"},
    "goint": {"sqlite": "integer", "postgresql": "bigint", "mysql": "bigint"},
    "int": {"sqlite": "int", "postgresql": "int", "mysql": "int"},  # gorm:"type:int"
    "int64": {"sqlite": "integer", "postgresql": "bigint", "mysql": "bigint"},
    "uint": {"sqlite": "integer", "postgresql": "bigint", "mysql": "bigint unsigned"},
    "text": {"sqlite": "text", "postgresql": "text", "mysql": "longtext"},
    # A string with an index, a default or in a primary key: MySQL needs a bounded length.
    "keyed_text": {"sqlite": "text", "postgresql": "text", "mysql": "varchar(191)"},
    "bool": {"sqlite": "numeric", "postgresql": "boolean", "mysql": "boolean"},
    "float": {"sqlite": "real", "postgresql": "decimal", "mysql": "double"},
    "char(32)": {"sqlite": "char(32)", "postgresql": "char(32)", "mysql": "char(32)"},
    "char(48)": {"sqlite": "char(48)", "postgresql": "char(48)", "mysql": "char(48)"},
    "varchar(32)": {"sqlite": "varchar(32)", "postgresql": "varchar(32)", "mysql": "varchar(32)"},
    "varchar(1024)": {
        "sqlite": "varchar(1024)",
        "postgresql": "varchar(1024)",
        "mysql": "varchar(1024)",
    },
}

# table -> [(column, kind, constraint)]; the order is the Go struct's.
SCHEMA: dict[str, list[tuple[str, str, str]]] = {
    "channels": [
        ("id", "pk", ""),
        ("type", "goint", "DEFAULT 0"),
        ("key", "text", ""),
        ("status", "goint", "DEFAULT 1"),
        ("name", "keyed_text", ""),
        ("weight", "uint", "DEFAULT 0"),
        ("created_time", "int64", ""),
        ("test_time", "int64", ""),
        ("response_time", "goint", ""),
        ("base_url", "keyed_text", "DEFAULT ''"),
        ("other", "text", ""),
        ("balance", "float", ""),
        ("balance_updated_time", "int64", ""),
        ("models", "text", ""),
        ("group", "varchar(32)", "DEFAULT 'default'"),
        ("used_quota", "int64", "DEFAULT 0"),
        ("model_mapping", "varchar(1024)", "DEFAULT ''"),
        ("priority", "int64", "DEFAULT 0"),
        ("config", "text", ""),
        ("system_prompt", "text", ""),
    ],
    "tokens": [
        ("id", "pk", ""),
        ("user_id", "goint", ""),
        ("key", "char(48)", ""),
        ("status", "goint", "DEFAULT 1"),
        ("name", "keyed_text", ""),
        ("created_time", "int64", ""),
        ("accessed_time", "int64", ""),
        ("expired_time", "int64", "DEFAULT -1"),
        ("remain_quota", "int64", "DEFAULT 0"),
        ("unlimited_quota", "bool", "DEFAULT false"),
        ("used_quota", "int64", "DEFAULT 0"),
        ("models", "text", ""),
        ("subnet", "keyed_text", "DEFAULT ''"),
    ],
    "users": [
        ("id", "pk", ""),
        ("username", "keyed_text", "UNIQUE"),
        ("password", "text", "NOT NULL"),
        ("display_name", "keyed_text", ""),
        ("role", "int", "DEFAULT 1"),
        ("status", "int", "DEFAULT 1"),
        ("email", "keyed_text", ""),
        ("github_id", "keyed_text", ""),
        ("wechat_id", "keyed_text", ""),
        ("lark_id", "keyed_text", ""),
        ("oidc_id", "keyed_text", ""),
        ("access_token", "char(32)", ""),
        ("quota", "int64", "DEFAULT 0"),
        ("used_quota", "int64", "DEFAULT 0"),
        ("request_count", "int", "DEFAULT 0"),
        ("group", "varchar(32)", "DEFAULT 'default'"),
        ("aff_code", "varchar(32)", ""),
        ("inviter_id", "int", ""),
    ],
    "options": [
        ("key", "keyed_text", ""),
        ("value", "text", ""),
    ],
    "redemptions": [
        ("id", "pk", ""),
        ("user_id", "goint", ""),
        ("key", "char(32)", ""),
        ("status", "goint", "DEFAULT 1"),
        ("name", "keyed_text", ""),
        ("quota", "int64", "DEFAULT 100"),
        ("created_time", "int64", ""),
        ("redeemed_time", "int64", ""),
    ],
    "abilities": [
        ("group", "varchar(32)", ""),
        ("model", "keyed_text", ""),
        ("channel_id", "goint", ""),
        ("enabled", "bool", ""),
        ("priority", "int64", "DEFAULT 0"),
    ],
    "logs": [
        ("id", "pk", ""),
        ("user_id", "goint", ""),
        ("created_at", "int64", ""),
        ("type", "goint", ""),
        ("content", "text", ""),
        ("username", "keyed_text", "DEFAULT ''"),
        ("token_name", "keyed_text", "DEFAULT ''"),
        ("model_name", "keyed_text", "DEFAULT ''"),
        ("quota", "goint", "DEFAULT 0"),
        ("prompt_tokens", "goint", "DEFAULT 0"),
        ("completion_tokens", "goint", "DEFAULT 0"),
        ("channel_id", "goint", ""),
        ("request_id", "keyed_text", "DEFAULT ''"),
        ("elapsed_time", "int64", "DEFAULT 0"),
        ("is_stream", "bool", "DEFAULT false"),
        ("system_prompt_reset", "bool", "DEFAULT false"),
    ],
}
PRIMARY_KEYS = {"options": ("key",), "abilities": ("group", "model", "channel_id")}
# GORM's uniqueIndex tags; names as GORM makes them.
UNIQUE_INDEXES = [
    ("idx_users_access_token", "users", "access_token"),
    ("idx_users_aff_code", "users", "aff_code"),
    ("idx_tokens_key", "tokens", "key"),
    ("idx_redemptions_key", "redemptions", "key"),
]

ROOT_PASSWORD = "123456"
COMMON_PASSWORD = "alice-pass-1"
# 16 random alphanumerics + 32 UUID hex chars with every other letter upper-cased.
ROOT_KEY = "r00tK3yAbCdEfGh1" + "A1B2C3D4E5F60718A9B0C1D2E3F40516"
COMMON_KEY = "aLiCeKeY12345678" + "B1C2D3E4F5A60718B9C0D1E2F3A40516"
LIMITED_KEY = "aLiCeLiMiTeD0001" + "C1D2E3F4A5B60718C9D0E1F2A3B40516"
DELETED_KEY = "dElEtEdUsEr00001" + "D1E2F3A4B5C60718D9E0F1A2B3C40516"
ORPHAN_KEY = "oRpHaNkEy0000001" + "E1F2A3B4C5D60718E9F0A1B2C3D40516"
MODEL_RATIO = {"gpt-4o": 1.25, "gpt-4o-mini": 0.075, "claude-3-5-sonnet-20241022": 1.5}


def _quote(name: str, dialect: str) -> str:
    return f'"{name}"' if dialect == "postgresql" else f"`{name}`"


def _create_table_sql(table: str, dialect: str) -> str:
    columns = [
        " ".join(filter(None, [_quote(name, dialect), _TYPES[kind][dialect], constraint]))
        for name, kind, constraint in SCHEMA[table]
    ]
    keys = ",".join(_quote(name, dialect) for name in PRIMARY_KEYS.get(table, ("id",)))
    return f"CREATE TABLE {_quote(table, dialect)} ({','.join(columns)},PRIMARY KEY ({keys}))"


def create_schema(connection: Any, dialect: str) -> None:
    """AutoMigrate's tables on an open DB-API connection ("sqlite", "postgresql", "mysql")."""
    cursor = connection.cursor()
    for table in SCHEMA:
        cursor.execute(_create_table_sql(table, dialect))
    for index, table, column in UNIQUE_INDEXES:
        cursor.execute(
            f"CREATE UNIQUE INDEX {_quote(index, dialect)} "
            f"ON {_quote(table, dialect)}({_quote(column, dialect)})"
        )
    connection.commit()


@functools.cache
def _bcrypt(password: str) -> str:
    # Go's bcrypt.GenerateFromPassword(DefaultCost) writes "$2a$10$...".
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10, prefix=b"2a")).decode()


def sample_users() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "username": "root",
            "password": _bcrypt(ROOT_PASSWORD),
            "display_name": "Root User",
            "role": 100,
            "status": 1,
            "email": "",
            "access_token": "0123456789abcdef0123456789abcdef",
            "quota": 500_000_000_000_000,
            "used_quota": 1_250,
            "request_count": 3,
            "group": "default",
            "aff_code": "",  # CreateRootAccountIfNeed never sets one
            "inviter_id": 0,
        },
        {
            "id": 2,
            "username": "alice",
            "password": _bcrypt(COMMON_PASSWORD),
            "display_name": "Alice",
            "role": 1,
            "status": 1,
            "email": "alice@example.com",
            "github_id": "alice-gh",
            "access_token": "",
            "quota": 2_000_000,
            "used_quota": 37_500,
            "request_count": 12,
            "group": "vip",
            "aff_code": "Xy9z",
            "inviter_id": 1,
        },
        {
            "id": 5,  # ids have gaps: users were deleted
            "username": "deleted_4f1c2b9e0d8a4e6fb7c3a2d1e0f9a8b7",
            "password": _bcrypt("gone-user-pw"),
            "display_name": "Bob",
            "role": 1,
            "status": 3,
            "email": "bob@example.com",
            "access_token": "fedcba9876543210fedcba9876543210",
            "quota": 0,
            "group": "default",
            "aff_code": "Q7rT",
            "inviter_id": 0,
        },
    ]


def sample_tokens() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "user_id": 1,
            "key": ROOT_KEY,
            "name": "Initial Root Token",
            "created_time": 1_700_000_000,
            "accessed_time": 1_700_000_500,
            "expired_time": -1,
            "remain_quota": 500_000_000_000_000,
            "unlimited_quota": True,
            "models": None,  # *string, NULL for tokens made before the whitelist existed
            "subnet": None,
        },
        {
            "id": 2,
            "user_id": 2,
            "key": COMMON_KEY,
            "name": "default",
            "created_time": 1_700_001_000,
            "accessed_time": 1_700_002_000,
            "expired_time": -1,
            "remain_quota": 0,
            "unlimited_quota": True,
            "models": "",
            "subnet": "",
        },
        {
            "id": 3,
            "user_id": 2,
            "key": LIMITED_KEY,
            "name": "limited",
            "created_time": 1_700_003_000,
            "accessed_time": 1_700_003_000,
            "expired_time": 1_900_000_000,
            "remain_quota": 250_000,
            "unlimited_quota": False,
            "used_quota": 37_500,
            "models": "gpt-4o-mini,gpt-4o",
            "subnet": "10.0.0.0/8,192.168.1.0/24",
        },
        {
            "id": 7,
            "user_id": 5,
            "key": DELETED_KEY,
            "status": 2,
            "name": "default",
            "created_time": 1_700_004_000,
            "accessed_time": 1_700_004_000,
            "unlimited_quota": True,
        },
        {
            "id": 8,
            "user_id": 99,  # a user removed from the database by hand
            "key": ORPHAN_KEY,
            "name": "orphan",
            "created_time": 1_700_005_000,
            "accessed_time": 1_700_005_000,
        },
    ]


def sample_channels() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "type": 1,
            "key": "sk-upstream-openai",
            "status": 1,
            "name": "OpenAI main",
            "weight": 0,
            "created_time": 1_699_000_000,
            "base_url": None,  # NULL: the channel was created before base_url had a default
            "other": None,
            "balance": 12.5,
            "models": "gpt-4o,gpt-4o-mini",
            "group": "default,vip",
            "used_quota": 1_250,
            "model_mapping": None,
            "priority": None,
            "config": "",
            "system_prompt": None,
        },
        {
            "id": 3,
            "type": 14,
            "key": "sk-ant-upstream",
            "status": 1,
            "name": "Anthropic",
            "weight": 5,
            "created_time": 1_699_100_000,
            "base_url": "https://api.anthropic.com",
            "other": "",
            "models": "claude-3-5-sonnet-20241022,gpt-4o",
            "group": "vip",
            "model_mapping": json.dumps({"gpt-4o": "claude-3-5-sonnet-20241022"}),
            "priority": 10,
            "config": "{}",
            "system_prompt": "You are helpful.",
        },
        {
            "id": 4,
            "type": 1,
            "key": "sk-upstream-dead",
            "status": 3,  # auto-disabled
            "name": "Broken",
            "weight": None,
            "created_time": 1_699_200_000,
            "base_url": "",
            "models": "gpt-4o-mini",
            "group": "default",
            "model_mapping": "",
            "priority": 0,
            "config": "",
        },
    ]


def sample_abilities() -> list[dict[str, Any]]:
    """What One API's AddAbilities wrote for the channels above."""
    rows = []
    for channel in sample_channels():
        for group in channel["group"].split(","):
            for model in channel["models"].split(","):
                rows.append(
                    {
                        "group": group,
                        "model": model,
                        "channel_id": channel["id"],
                        "enabled": channel["status"] == 1,
                        "priority": channel["priority"] or 0,
                    }
                )
    return rows


def sample_redemptions() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "user_id": 1,
            "key": "8f14e45fceea167a5a36dedd4bea2543",
            "status": 1,
            "name": "welcome",
            "quota": 500_000,
            "created_time": 1_700_010_000,
            "redeemed_time": 0,
        },
        {
            "id": 2,
            "user_id": 1,
            "key": "c9f0f895fb98ab9159f51fd0297e236d",
            "status": 3,
            "name": "welcome",
            "quota": 500_000,
            "created_time": 1_700_010_000,
            "redeemed_time": 1_700_020_000,
        },
    ]


def sample_options() -> list[dict[str, Any]]:
    return [
        {"key": "ModelRatio", "value": json.dumps(MODEL_RATIO)},
        {"key": "QuotaPerUnit", "value": "500000"},
        {"key": "SystemName", "value": "My One API"},
        {"key": "RegisterEnabled", "value": "false"},
        {"key": "Notice", "value": ""},
    ]


def sample_logs() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "user_id": 2,
            "created_at": 1_700_001_000,
            "type": 4,
            "content": "新用户注册赠送 $4.000000 额度",
        },
        {
            "id": 2,
            "user_id": 2,
            "created_at": 1_700_020_000,
            "type": 1,
            "content": "通过兑换码充值 $1.000000 额度",
            "username": "alice",
            "quota": 500_000,
            "request_id": "2024111112000012345678",
        },
        {
            "id": 3,
            "user_id": 2,
            "created_at": 1_700_030_000,
            "type": 2,
            "content": "模型倍率 0.08，分组倍率 1.00",
            "username": "alice",
            "token_name": "limited",
            "model_name": "gpt-4o-mini",
            "quota": 37_500,
            "prompt_tokens": 1_000,
            "completion_tokens": 250,
            "channel_id": 1,
            "request_id": "2024111112000087654321",
            "elapsed_time": 812,
            "is_stream": True,
        },
        # A channel-test run writes one log per channel with the run's single request id.
        {
            "id": 4,
            "user_id": 1,
            "created_at": 1_700_040_000,
            "type": 5,
            "content": "通道 OpenAI main 测试成功",
            "username": "root",
            "model_name": "gpt-4o-mini",
            "channel_id": 1,
            "request_id": "2024111112000011112222",
            "elapsed_time": 650,
        },
        {
            "id": 5,
            "user_id": 1,
            "created_at": 1_700_040_001,
            "type": 5,
            "content": "通道 Anthropic 测试成功",
            "username": "root",
            "model_name": "gpt-4o",
            "channel_id": 3,
            "request_id": "2024111112000011112222",
            "elapsed_time": 900,
            "system_prompt_reset": True,
        },
        {
            "id": 6,
            "user_id": 1,
            "created_at": 1_700_050_000,
            "type": 3,
            "content": "管理员将用户额度从 $4 修改为 $4",
            "username": "root",
        },
    ]


def _insert(connection: Any, dialect: str, table: str, rows: list[dict[str, Any]]) -> None:
    placeholder = "?" if dialect == "sqlite" else "%s"
    cursor = connection.cursor()
    for row in rows:
        names = ",".join(_quote(name, dialect) for name in row)
        marks = ",".join(placeholder for _ in row)
        cursor.execute(
            f"INSERT INTO {_quote(table, dialect)} ({names}) VALUES ({marks})",
            tuple(row.values()),
        )


def insert_sample_rows(connection: Any, dialect: str) -> None:
    for table, rows in [
        ("users", sample_users()),
        ("tokens", sample_tokens()),
        ("channels", sample_channels()),
        ("abilities", sample_abilities()),
        ("redemptions", sample_redemptions()),
        ("options", sample_options()),
        ("logs", sample_logs()),
    ]:
        _insert(connection, dialect, table, rows)
    connection.commit()


def build(connection: Any, dialect: str) -> None:
    """Schema and sample rows on an empty database."""
    create_schema(connection, dialect)
    insert_sample_rows(connection, dialect)


def build_sqlite(path: Path) -> Path:
    connection = sqlite3.connect(path)
    try:
        build(connection, "sqlite")
    finally:
        connection.close()
    return path
