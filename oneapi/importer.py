"""Copy a One API database (users, tokens, channels, redemptions, options, logs) into ours.

The source is read with plain DB-API connections (sqlite3, psycopg, pymysql), never the ORM,
so any One API version's schema can be read as it is. Rows keep One API's ids so that
references between tables (tokens.user_id, logs.user_id, logs.channel_id) stay valid; a row of
ours with the same id (the same key for tokens and options) is updated in place, which makes
a second run a no-op. Abilities are not copied: they are rebuilt from the channels with
`channels_mgmt.services.abilities_for`, exactly as every channel write does.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from django.core.management.color import no_style
from django.db import IntegrityError, connections, models, router, transaction

from accounts.models import Role, User
from billing.models import ApiKey, Log, Redemption
from channels_mgmt.models import Ability, Channel
from channels_mgmt.services import abilities_for
from oneapi import caching
from oneapi.dsn import DSNError, parse_dsn
from oneapi.models import Option

BATCH_SIZE = 1000
CONNECT_TIMEOUT_SECONDS = 10
# One API's AutoMigrate creates these in its main database; logs may be in LOG_SQL_DSN.
REQUIRED_TABLES = ("users", "tokens", "channels", "abilities", "redemptions", "options")
REQUIRED_COLUMNS = {
    "users": {"id", "username", "password", "role", "status"},
    "tokens": {"id", "user_id", "key"},
    "channels": {"id", "type", "key", "models", "group"},
    "options": {"key", "value"},
}
# Django's marker for "no usable password"; constant (not random) so reruns are no-ops.
UNUSABLE_PASSWORD = "!"
TABLES = ("users", "tokens", "channels", "abilities", "redemptions", "options", "logs")


class ImportFailed(Exception):
    """The import cannot run or was rolled back; the message is meant for the operator."""


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    deleted: int = 0


@dataclass
class Report:
    dry_run: bool
    counts: dict[str, Counts] = field(default_factory=lambda: {t: Counts() for t in TABLES})
    warnings: list[str] = field(default_factory=list)
    # (table, column, "truncated" or "skipped") -> rows, reported once per kind at the end
    too_long: Counter[tuple[str, str, str]] = field(default_factory=Counter)


_TABLES_SQL = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "postgresql": "SELECT table_name FROM information_schema.tables "
    "WHERE table_schema = current_schema()",
    "mysql": "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
}
_COLUMNS_SQL = {
    "postgresql": "SELECT column_name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
    "mysql": "SELECT column_name FROM information_schema.columns "
    "WHERE table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position",
}


# --- the source database ---------------------------------------------------------------------


class Source:
    """A read-only view of a One API database over a DB-API connection."""

    def __init__(self, connection: Any, dialect: str, label: str) -> None:
        self.connection = connection
        self.dialect = dialect  # "sqlite", "postgresql" or "mysql"
        self.label = label

    def quote(self, name: str) -> str:
        # `group` and `key` are reserved words on every backend; quotes inside are doubled.
        mark = "`" if self.dialect == "mysql" else '"'
        return mark + name.replace(mark, mark * 2) + mark

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def tables(self) -> set[str]:
        return {str(row[0]) for row in self._query(_TABLES_SQL[self.dialect])}

    def columns(self, table: str) -> list[str]:
        if self.dialect == "sqlite":
            return [str(row[1]) for row in self._query(f"PRAGMA table_info({self.quote(table)})")]
        return [str(row[0]) for row in self._query(_COLUMNS_SQL[self.dialect], (table,))]

    def rows(self, table: str, order_by: str) -> Iterator[dict[str, Any]]:
        """Stream the rows as dicts; columns an older One API lacks are simply absent."""
        names = self.columns(table)
        # Only quoted identifiers from the source's own catalog are interpolated, no values.
        columns = ", ".join(self.quote(n) for n in names)
        sql = f"SELECT {columns} FROM {self.quote(table)} ORDER BY {self.quote(order_by)}"  # noqa: S608
        cursor = self._streaming_cursor(table)
        try:
            cursor.execute(sql)
            while batch := cursor.fetchmany(BATCH_SIZE):
                for row in batch:
                    yield dict(zip(names, row, strict=True))
        finally:
            cursor.close()

    def _streaming_cursor(self, table: str) -> Any:
        # Client-side cursors of psycopg and pymysql would load a whole logs table in memory.
        if self.dialect == "postgresql":
            return self.connection.cursor(name=f"oneapi_import_{table}")
        if self.dialect == "mysql":
            import pymysql.cursors

            return self.connection.cursor(pymysql.cursors.SSCursor)
        return self.connection.cursor()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


def open_source(source: str) -> Source:
    """Connect to a SQLite file path or a One API SQL_DSN (Go MySQL DSN or URL)."""
    text = source.strip()
    if not text:
        raise ImportFailed("no source given: pass a SQLite file path or a SQL_DSN")
    if Path(text).is_file() or not _looks_like_dsn(text):
        return _open_sqlite(Path(text))
    try:
        entry = parse_dsn(text, variable="source")
    except DSNError as exc:
        raise ImportFailed(str(exc)) from None
    engine = entry["ENGINE"].rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return _open_sqlite(Path(entry["NAME"]))
    label = f"{engine} database {entry['NAME']!r} at {entry['HOST']}:{entry['PORT']}"
    opener = _open_postgresql if engine == "postgresql" else _open_mysql
    try:
        return Source(opener(entry), "postgresql" if engine == "postgresql" else "mysql", label)
    except ImportFailed:
        raise
    except Exception as exc:
        raise ImportFailed(f"cannot connect to the {label}: {exc}") from exc


def _looks_like_dsn(text: str) -> bool:
    # An absolute file path also parses as a Go MySQL DSN, so files are tried first.
    return "://" in text or "@" in text or text.startswith(("tcp(", "unix("))


def _open_sqlite(path: Path) -> Source:
    if not path.is_file():
        raise ImportFailed(f"no such file: {path}")
    # Read-only, so a mistyped path can never create or modify a database.
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ImportFailed(f"{path} is not a SQLite database ({exc})") from None
    return Source(connection, "sqlite", f"SQLite file {path}")


def _open_postgresql(entry: dict[str, Any]) -> Any:
    import psycopg

    options = {k: v for k, v in entry["OPTIONS"].items() if isinstance(v, str)}
    options.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
    return psycopg.connect(
        host=entry["HOST"],
        port=entry["PORT"],
        user=entry["USER"] or None,
        password=entry["PASSWORD"] or None,
        dbname=entry["NAME"],
        **options,
    )


def _open_mysql(entry: dict[str, Any]) -> Any:
    import pymysql

    options = entry["OPTIONS"]
    kwargs: dict[str, Any] = (
        {"unix_socket": options["unix_socket"]} if "unix_socket" in options else {}
    )
    return pymysql.connect(
        host=entry["HOST"],
        port=int(entry["PORT"] or 3306),
        user=entry["USER"],
        password=entry["PASSWORD"],
        database=entry["NAME"],
        charset=options.get("charset", "utf8mb4"),
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        **kwargs,
    )


def check_schema(source: Source) -> None:
    """Refuse anything that does not look like One API's GORM schema."""
    try:
        tables = source.tables()
        missing = [t for t in REQUIRED_TABLES if t not in tables]
        if missing:
            raise ImportFailed(
                f"{source.label} is not a One API database: missing tables {', '.join(missing)}"
            )
        for table, required in REQUIRED_COLUMNS.items():
            absent = required - set(source.columns(table))
            if absent:
                raise ImportFailed(
                    f"{source.label} is not a One API database: table {table} has no "
                    f"column(s) {', '.join(sorted(absent))}"
                )
    except ImportFailed:
        raise
    except Exception as exc:
        raise ImportFailed(f"cannot read {source.label}: {exc}") from exc


def check_schema_logs(source: Source) -> None:
    """A LOG_SQL_DSN database only has to hold One API's logs table."""
    try:
        columns = set(source.columns("logs")) if "logs" in source.tables() else set()
    except Exception as exc:
        raise ImportFailed(f"cannot read {source.label}: {exc}") from exc
    if not {"id", "user_id", "created_at", "type"} <= columns:
        raise ImportFailed(f"{source.label} has no One API logs table")


# --- value helpers ---------------------------------------------------------------------------


def _text(value: Any, default: str = "") -> str:
    """NULL becomes the default; char(n) columns come back space-padded on PostgreSQL."""
    return default if value is None else str(value).rstrip(" ")


def _int(value: Any, default: int = 0) -> int:
    return default if value is None else int(value)


def _bool(value: Any) -> bool:
    # SQLite stores GORM bools as numeric 0/1, MySQL as tinyint(1), PostgreSQL as boolean.
    if isinstance(value, str):
        return value.strip().lower() in {"1", "t", "true"}
    return bool(value)


def _optional(value: Any) -> str | None:
    """Empty strings become NULL for our unique-but-optional columns."""
    text = _text(value)
    return text or None


def _password(value: Any) -> str:
    # One API hashes with Go's bcrypt ($2a$10$...); Django's BCryptPasswordHasher reads
    # "bcrypt$<hash>" and upgrades it to the default hasher at the next login.
    hashed = _text(value)
    return f"bcrypt${hashed}" if hashed.startswith("$2") else UNUSABLE_PASSWORD


# --- one mapping function per table ----------------------------------------------------------


def map_user(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _int(row["id"]),
        "username": _text(row["username"]),
        "password": _password(row.get("password")),
        "display_name": _text(row.get("display_name")),
        "role": _int(row.get("role"), Role.COMMON),
        "status": _int(row.get("status"), 1),
        "email": _text(row.get("email")),
        "github_id": _text(row.get("github_id")),
        "wechat_id": _text(row.get("wechat_id")),
        "lark_id": _text(row.get("lark_id")),
        "oidc_id": _text(row.get("oidc_id")),
        "access_token": _optional(row.get("access_token")),
        "quota": _int(row.get("quota")),
        "used_quota": _int(row.get("used_quota")),
        "request_count": _int(row.get("request_count")),
        "group": _text(row.get("group")) or "default",
        "aff_code": _optional(row.get("aff_code")),
        "inviter_id": _int(row.get("inviter_id")),
    }


def map_token(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _int(row["id"]),  # kept when free; tokens are matched by key, not id
        "key": _text(row["key"]),
        "user_id": _int(row["user_id"]),
        "status": _int(row.get("status"), 1),
        "name": _text(row.get("name")),
        "created_time": _int(row.get("created_time")),
        "accessed_time": _int(row.get("accessed_time")),
        "expired_time": _int(row.get("expired_time"), -1),
        "remain_quota": _int(row.get("remain_quota")),
        "unlimited_quota": _bool(row.get("unlimited_quota")),
        "used_quota": _int(row.get("used_quota")),
        "models": _text(row.get("models")),
        "subnet": _text(row.get("subnet")),
    }


def map_channel(row: dict[str, Any]) -> dict[str, Any]:
    weight = _int(row.get("weight"))
    return {
        "id": _int(row["id"]),
        "type": _int(row.get("type")),
        "key": _text(row.get("key")),
        "status": _int(row.get("status"), 1),
        "name": _text(row.get("name")),
        # One API stores weight but picks uniformly (its default is 0); here 0 means standby,
        # so an unset weight becomes our default to keep the imported channels in rotation.
        "weight": weight if weight > 0 else 1,
        "created_time": _int(row.get("created_time")),
        "test_time": _int(row.get("test_time")),
        "response_time": _int(row.get("response_time")),
        "base_url": _text(row.get("base_url")),
        "other": _text(row.get("other")),
        "balance": float(row.get("balance") or 0),
        "balance_updated_time": _int(row.get("balance_updated_time")),
        "models": _text(row.get("models")),
        "group": _text(row.get("group")) or "default",
        "used_quota": _int(row.get("used_quota")),
        "model_mapping": _text(row.get("model_mapping")),
        "priority": _int(row.get("priority")),
        "config": _text(row.get("config")),
        "system_prompt": _text(row.get("system_prompt")),
    }


def map_redemption(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _int(row["id"]),
        "user_id": _int(row.get("user_id")),  # One API's user_id is the creator
        "key": _text(row["key"]),
        "status": _int(row.get("status"), 1),
        "name": _text(row.get("name")),
        "quota": _int(row.get("quota"), 100),
        "created_time": _int(row.get("created_time")),
        "redeemed_time": _int(row.get("redeemed_time")),
    }


def map_option(row: dict[str, Any]) -> dict[str, Any]:
    return {"key": _text(row["key"]), "value": "" if row["value"] is None else str(row["value"])}


def map_log(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _int(row["id"]),
        "user_id": _int(row.get("user_id")),
        "created_at": _int(row.get("created_at")),
        "type": _int(row.get("type")),
        "content": _text(row.get("content")),
        "username": _text(row.get("username")),
        "token_name": _text(row.get("token_name")),
        "model_name": _text(row.get("model_name")),
        "quota": _int(row.get("quota")),
        "prompt_tokens": _int(row.get("prompt_tokens")),
        "completion_tokens": _int(row.get("completion_tokens")),
        "channel_id": _int(row.get("channel_id")),
        "request_id": _optional(row.get("request_id")),
        "elapsed_time": _int(row.get("elapsed_time")),
        "is_stream": _bool(row.get("is_stream")),
        "system_prompt_reset": _bool(row.get("system_prompt_reset")),
    }


# --- writing ---------------------------------------------------------------------------------


def _chunks(items: Iterable[dict[str, Any]], size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _fits(model: type[models.Model], values: dict[str, Any], report: Report, table: str) -> bool:
    """Truncate over-long text (PostgreSQL and MySQL enforce lengths); refuse over-long unique
    values, since a cut key or username would silently stop matching."""
    for name, value in values.items():
        field_ = model._meta.get_field(name)
        limit = getattr(field_, "max_length", None)
        if not isinstance(value, str) or limit is None or len(value) <= limit:
            continue
        if field_.unique:
            report.too_long[(table, f"{name} (max {limit})", "skipped")] += 1
            return False
        values[name] = value[:limit]
        report.too_long[(table, f"{name} (max {limit})", "truncated")] += 1
    return True


def _too_long_warnings(report: Report) -> None:
    for (table, column, action), rows in sorted(report.too_long.items()):
        report.warnings.append(f"{table}: {action} {rows} row(s) with a longer {column}")


def _apply(obj: models.Model, values: dict[str, Any], skip: frozenset[str]) -> set[str]:
    """Set the values that differ on `obj`; return the names of the fields changed."""
    changed = set()
    for name, value in values.items():
        if name not in skip and getattr(obj, name) != value:
            setattr(obj, name, value)
            changed.add(name)
    return changed


def _upsert(
    model: type[models.Model],
    chunk: list[dict[str, Any]],
    counts: Counts,
    *,
    match: str = "id",
    using: str = "default",
) -> list[models.Model]:
    """Update the rows of ours that match; return unsaved instances of the new ones."""
    manager = model._default_manager.db_manager(using)
    existing = manager.in_bulk([values[match] for values in chunk], field_name=match)
    skip = frozenset({match, model._meta.pk.name})
    new, changed_rows, changed_fields = [], [], set()
    for values in chunk:
        obj = existing.get(values[match])
        if obj is None:
            new.append(model(**values))
            continue
        changed = _apply(obj, values, skip)
        if changed:
            changed_rows.append(obj)
            changed_fields |= changed
        else:
            counts.unchanged += 1
    if changed_rows:
        manager.bulk_update(changed_rows, sorted(changed_fields))
        counts.updated += len(changed_rows)
    return new


def _create(model: type[models.Model], objs: list[models.Model], counts: Counts, using: str):
    model._default_manager.db_manager(using).bulk_create(objs)
    counts.created += len(objs)


def _fitting(
    source: Source,
    table: str,
    mapper: Callable[[dict[str, Any]], dict[str, Any]],
    model: type[models.Model],
    report: Report,
    order_by: str = "id",
) -> Iterator[dict[str, Any]]:
    for row in source.rows(table, order_by):
        values = mapper(row)
        if _fits(model, values, report, table):
            yield values
        else:
            report.counts[table].skipped += 1


def import_users(source: Source, report: Report) -> None:
    counts = report.counts["users"]
    for chunk in _chunks(_fitting(source, "users", map_user, User, report)):
        _create(User, _upsert(User, chunk, counts), counts, "default")


def import_tokens(source: Source, report: Report) -> None:
    """Tokens are matched by key (what clients hold); One API's id is kept when it is free."""
    counts = report.counts["tokens"]
    user_ids = set(User.objects.values_list("id", flat=True))
    homeless: list[ApiKey] = []
    orphans = 0
    for chunk in _chunks(_fitting(source, "tokens", map_token, ApiKey, report)):
        owned = [values for values in chunk if values["user_id"] in user_ids]
        orphans += len(chunk) - len(owned)
        new = _upsert(ApiKey, owned, counts, match="key")
        taken = set(ApiKey.objects.filter(pk__in=[o.pk for o in new]).values_list("pk", flat=True))
        homeless += [o for o in new if o.pk in taken]
        _create(ApiKey, [o for o in new if o.pk not in taken], counts, "default")
    # Explicit ids past the highest one: PostgreSQL's sequence has not seen the imported ids yet.
    next_id = (ApiKey.objects.aggregate(top=models.Max("id"))["top"] or 0) + 1
    for offset, obj in enumerate(homeless):
        obj.pk = next_id + offset
    _create(ApiKey, homeless, counts, "default")
    counts.skipped += orphans
    if orphans:
        # One API refuses these too: its TokenAuth rejects a key whose user is missing.
        report.warnings.append(f"tokens: skipped {orphans} whose owner does not exist")


def import_channels(source: Source, report: Report) -> list[int]:
    counts = report.counts["channels"]
    channel_ids: list[int] = []
    for chunk in _chunks(_fitting(source, "channels", map_channel, Channel, report)):
        _create(Channel, _upsert(Channel, chunk, counts), counts, "default")
        channel_ids += [values["id"] for values in chunk]
    return channel_ids


def rebuild_abilities(source: Source, channel_ids: list[int], report: Report) -> None:
    """Derive the abilities of the imported channels as our channel writes do, by diff, so
    an unchanged channel keeps its rows untouched."""
    counts = report.counts["abilities"]
    wanted: dict[tuple[str, str, int], Ability] = {}
    for chunk in _chunks(iter(channel_ids)):
        for channel in Channel.objects.filter(pk__in=chunk):
            for ability in abilities_for(channel):
                wanted[(ability.group, ability.model, channel.pk)] = ability
    existing = {
        (a.group, a.model, a.channel_id): a
        for a in Ability.objects.filter(channel_id__in=channel_ids)
    }
    changed = []
    for ident, ability in wanted.items():
        current = existing.get(ident)
        if current is None:
            continue
        values = {
            "enabled": ability.enabled,
            "priority": ability.priority,
            "weight": ability.weight,
        }
        if _apply(current, values, frozenset()):
            changed.append(current)
        else:
            counts.unchanged += 1
    Ability.objects.bulk_update(changed, ["enabled", "priority", "weight"], batch_size=BATCH_SIZE)
    counts.updated += len(changed)
    stale = [a.pk for ident, a in existing.items() if ident not in wanted]
    for chunk in _chunks(iter(stale)):
        Ability.objects.filter(pk__in=chunk).delete()
    counts.deleted += len(stale)
    new = [ability for ident, ability in wanted.items() if ident not in existing]
    Ability.objects.bulk_create(new, batch_size=BATCH_SIZE)
    counts.created += len(new)
    _compare_source_abilities(source, set(wanted), report)


def _compare_source_abilities(
    source: Source, rebuilt: set[tuple[str, str, int]], report: Report
) -> None:
    """One API can leave abilities that disagree with channels; say so, since routing will
    now follow the channels."""
    found = {
        (_text(row["group"]), _text(row["model"]), _int(row["channel_id"]))
        for row in source.rows("abilities", "channel_id")
    }
    if found != rebuilt:
        report.warnings.append(
            f"abilities: One API's table disagreed with its channels ({len(found - rebuilt)} "
            f"extra, {len(rebuilt - found)} missing); rebuilt from the channels"
        )


def import_redemptions(source: Source, report: Report) -> None:
    """A code whose creator is gone still works in One API: it is given to the first root."""
    counts = report.counts["redemptions"]
    user_ids = set(User.objects.values_list("id", flat=True))
    root_id = User.objects.filter(role__gte=Role.ROOT).order_by("id").values_list("id", flat=True)
    fallback = root_id.first()
    reassigned = orphans = 0
    for chunk in _chunks(_fitting(source, "redemptions", map_redemption, Redemption, report)):
        kept = []
        for values in chunk:
            if values["user_id"] not in user_ids:
                if fallback is None:
                    orphans += 1
                    continue
                values["user_id"] = fallback
                reassigned += 1
            kept.append(values)
        _create(Redemption, _upsert(Redemption, kept, counts), counts, "default")
    if reassigned:
        report.warnings.append(f"redemptions: {reassigned} without a creator given to root")
    counts.skipped += orphans
    if orphans:
        report.warnings.append(f"redemptions: skipped {orphans} without a creator (no root)")


def import_options(source: Source, report: Report) -> None:
    counts = report.counts["options"]
    for chunk in _chunks(_fitting(source, "options", map_option, Option, report, "key")):
        _create(Option, _upsert(Option, chunk, counts, match="key"), counts, "default")


def import_logs(source: Source, report: Report, using: str) -> None:
    counts = report.counts["logs"]
    cleared = 0
    for chunk in _chunks(_fitting(source, "logs", map_log, Log, report)):
        cleared += _drop_duplicate_request_ids(chunk, using)
        _create(Log, _upsert(Log, chunk, counts, using=using), counts, using)
    if cleared:
        report.warnings.append(
            f"logs: {cleared} repeated a request id (e.g. a channel test run) and were "
            "imported without it, as our request ids are unique"
        )


def _drop_duplicate_request_ids(chunk: list[dict[str, Any]], using: str) -> int:
    """Keep a request id on the first log that has it (by id); later ones get NULL."""
    ids = [values["request_id"] for values in chunk if values["request_id"]]
    owners = dict(
        Log.objects.using(using).filter(request_id__in=ids).values_list("request_id", "id")
    )
    cleared = 0
    for values in chunk:
        request_id = values["request_id"]
        if request_id is None:
            continue
        if owners.setdefault(request_id, values["id"]) != values["id"]:
            values["request_id"] = None
            cleared += 1
    return cleared


# --- the run ---------------------------------------------------------------------------------


def _invalidate_caches() -> None:
    caching.invalidate(caching.CHANNELS)
    caching.invalidate(caching.OPTIONS)
    caching.invalidate(caching.KEY, "*")
    caching.invalidate(caching.USER, "*")


def _reset_sequences(using: str, model_list: list[type[models.Model]]) -> None:
    """PostgreSQL sequences do not move on explicit ids: without this, the next user, key or
    log created here would collide with an imported id. Elsewhere the SQL list is empty."""
    connection = connections[using]
    statements = connection.ops.sequence_reset_sql(no_style(), model_list)
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def _run_tables(source: Source, log_source: Source, log_alias: str, report: Report) -> None:
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("users", lambda: import_users(source, report)),
        ("tokens", lambda: import_tokens(source, report)),
        ("channels", lambda: rebuild_abilities(source, import_channels(source, report), report)),
        ("redemptions", lambda: import_redemptions(source, report)),
        ("options", lambda: import_options(source, report)),
    ]
    if "logs" in log_source.tables():
        steps.append(("logs", lambda: import_logs(log_source, report, log_alias)))
    else:
        report.warnings.append(f"logs: {log_source.label} has no logs table; none imported")
    for table, step in steps:
        try:
            step()
        except IntegrityError as exc:
            raise ImportFailed(
                f"{table}: a row conflicts with one already in this database under another "
                f"id (same username, key, access token or aff code?): {exc}"
            ) from exc
    _too_long_warnings(report)


def run_import(
    source: Source, *, log_source: Source | None = None, dry_run: bool = False
) -> Report:
    """Copy everything in one transaction per database; a dry run rolls it back."""
    check_schema(source)
    if log_source is not None:
        check_schema_logs(log_source)
    report = Report(dry_run=dry_run)
    log_alias = router.db_for_write(Log) or "default"
    aliases = list(dict.fromkeys(["default", log_alias]))
    with contextlib.ExitStack() as stack:
        for alias in aliases:
            stack.enter_context(transaction.atomic(using=alias))
        _run_tables(source, log_source or source, log_alias, report)
        if dry_run:
            for alias in aliases:
                transaction.set_rollback(True, using=alias)
            return report
        _invalidate_caches()
        _reset_sequences("default", [User, ApiKey, Channel, Ability, Redemption])
        _reset_sequences(log_alias, [Log])
    return report
