"""Turn One API's SQL_DSN / LOG_SQL_DSN values into Django DATABASES entries.

Accepted forms:
- Go MySQL driver DSN: ``user:pass@tcp(host:port)/db?charset=utf8mb4&parseTime=True``
  (also ``unix(/path/to.sock)``), exactly what One API users already have;
- URLs: ``postgres://`` / ``postgresql://``, ``mysql://``, ``sqlite:///relative.db`` and
  ``sqlite:////absolute.db``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

# Parameters of the Go MySQL driver that mean nothing to a Python driver.
_GO_ONLY_MYSQL_PARAMS = {"parseTime", "loc", "timeout", "readTimeout", "writeTimeout", "tls"}

_GO_MYSQL_DSN = re.compile(
    # The password may contain "@": like Go's driver, the user part ends at the LAST "@".
    r"^(?:(?P<user>[^:@/]*)(?::(?P<password>.*))?@)?"
    r"(?P<net>tcp|unix)?(?:\((?P<address>[^)]*)\))?"
    r"/(?P<name>[^?]*)(?:\?(?P<params>.*))?$"
)


class DSNError(ImproperlyConfigured):
    pass


def parse_dsn(value: str, *, variable: str = "SQL_DSN") -> dict[str, Any]:
    """Return a Django database settings dict for ``value``; raise DSNError naming ``variable``."""
    dsn = value.strip()
    if not dsn:
        raise DSNError(f"{variable} is empty")
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else ""
    if scheme in {"postgres", "postgresql"}:
        return _from_url(dsn, "django.db.backends.postgresql", 5432, variable)
    if scheme == "mysql":
        return _with_mysql_defaults(_from_url(dsn, "django.db.backends.mysql", 3306, variable))
    if scheme == "sqlite":
        return sqlite_database(_sqlite_path(dsn, variable))
    if scheme:
        raise DSNError(
            f"{variable}: unsupported scheme {scheme!r} "
            "(use postgres://, mysql://, sqlite:/// or a Go MySQL DSN user:pass@tcp(host:port)/db)"
        )
    return _from_go_mysql(dsn, variable)


def sqlite_database(path: str, *, busy_timeout_ms: int = 3000) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            "timeout": busy_timeout_ms / 1000,
            # IMMEDIATE takes the write lock at BEGIN, so concurrent writers wait for the
            # busy timeout instead of failing with "database is locked" on lock upgrade.
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


def _sqlite_path(dsn: str, variable: str) -> str:
    # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them.
    rest = dsn.split("://", 1)[1]
    if not rest.startswith("/") or rest == "/":
        raise DSNError(f"{variable}: sqlite URLs look like sqlite:///data/one-api.db")
    path = rest[1:]
    return unquote(path.split("?", 1)[0])


def _from_url(dsn: str, engine: str, default_port: int, variable: str) -> dict[str, Any]:
    parts = urlsplit(dsn)
    name = unquote(parts.path.lstrip("/"))
    if not parts.hostname:
        raise DSNError(f"{variable}: missing host in {_redact(dsn)!r}")
    if not name:
        raise DSNError(f"{variable}: missing database name in {_redact(dsn)!r}")
    try:
        port = parts.port or default_port
    except ValueError:
        raise DSNError(f"{variable}: bad port in {_redact(dsn)!r}") from None
    options = dict(parse_qsl(parts.query))
    return {
        "ENGINE": engine,
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname,
        "PORT": str(port),
        "OPTIONS": options,
    }


def _from_go_mysql(dsn: str, variable: str) -> dict[str, Any]:
    match = _GO_MYSQL_DSN.match(dsn)
    if match is None or not match["name"]:
        raise DSNError(
            f"{variable}: cannot parse {_redact(dsn)!r}; expected user:pass@tcp(host:port)/db "
            "or a postgres://, mysql:// or sqlite:/// URL"
        )
    address = match["address"] or "127.0.0.1:3306"
    entry: dict[str, Any] = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": match["name"],
        "USER": match["user"] or "",
        "PASSWORD": match["password"] or "",
        "OPTIONS": {},
    }
    if match["net"] == "unix":
        entry["OPTIONS"]["unix_socket"] = address
        entry["HOST"] = "localhost"
        entry["PORT"] = ""
    else:
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "3306")
        if not port.isdigit():
            raise DSNError(f"{variable}: bad port {port!r} in {_redact(dsn)!r}")
        entry["HOST"] = host or "127.0.0.1"
        entry["PORT"] = port
    for key, value in parse_qsl(match["params"] or ""):
        if key == "charset":
            entry["OPTIONS"]["charset"] = value.split(",")[0]
        elif key not in _GO_ONLY_MYSQL_PARAMS:
            entry["OPTIONS"][key] = value
    return _with_mysql_defaults(entry)


def _with_mysql_defaults(entry: dict[str, Any]) -> dict[str, Any]:
    options = entry.setdefault("OPTIONS", {})
    options.setdefault("charset", "utf8mb4")
    options.setdefault("init_command", "SET sql_mode='STRICT_TRANS_TABLES'")
    options.setdefault("isolation_level", "read committed")
    return entry


def _redact(dsn: str) -> str:
    """Hide the password when a DSN is quoted in an error message.

    Passwords may contain "@", so the credentials end at the last "@".
    """
    scheme, separator, rest = dsn.partition("://") if "://" in dsn else ("", "", dsn)
    userinfo, at, host_part = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return dsn
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{separator}{user}:***@{host_part}"
