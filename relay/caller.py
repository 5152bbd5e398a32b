"""Who is calling: the key, its owner and the state the request will read, all from memory.

Everything a warm request needs (key, user, balances, options, routing table) is already in
process caches; only a cold entry costs a query, run in a worker thread so the event loop
never blocks on the database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TypeVar

from asgiref.sync import sync_to_async

from channels_mgmt import selection
from channels_mgmt.selection import RoutingTable
from oneapi import caching, options
from oneapi.options import OptionSnapshot
from relay import auth, ratelimit, runtime
from relay.auth import KeyInfo, UserInfo
from relay.errors import RelayError
from relay.http import Request

T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    key: KeyInfo
    user: UserInfo
    forced_channel_id: str | None
    options: OptionSnapshot
    table: RoutingTable
    runtime: runtime.Runtime
    # This request's rate-limit ticket; None when neither the key nor its group is limited.
    rate: ratelimit.Ticket | None = None

    @property
    def limited_key_id(self) -> int | None:
        """The key's id when its own quota is capped (its balance takes part in reservations)."""
        return None if self.key.unlimited_quota else self.key.id


async def fresh(value: caching.Reloadable[T]) -> T:
    loaded = value.peek()
    if loaded is not None:
        return loaded
    return await sync_to_async(value.get, thread_sensitive=True)()


async def current_options() -> OptionSnapshot:
    return await fresh(options._snapshot)


async def current_routing_table() -> RoutingTable:
    return await fresh(selection._table)


async def _key_and_user(key: str) -> tuple[KeyInfo | None, UserInfo | None]:
    if not key or "\x00" in key:  # no key holds NUL (and PostgreSQL refuses it in a query)
        return None, None
    hit, info = auth.cached_key(key)
    user = auth.cached_user(info.user_id) if info is not None else None
    if not hit or (info is not None and user is None):
        info = await sync_to_async(auth.load_key, thread_sensitive=True)(key)
        user = auth.cached_user(info.user_id) if info is not None else None
    return info, user


async def authenticate(request: Request, authorization: str | None = None) -> Caller:
    """One API's TokenAuth: parse the key, validate it and its owner, or raise its error."""
    header = authorization if authorization is not None else request.header("authorization")
    credentials = auth.parse_authorization(header)
    info, user = await _key_and_user(credentials.key)
    current = runtime.current()
    remaining = 0
    if info is not None and user is not None:
        if not current.has_balances(user.id, info.id):
            await sync_to_async(current.load_balances, thread_sensitive=True)(
                user.id, info.key, info.id
            )
        remaining = current.ledger.key_available(info.id)
    key = auth.check_key(info, credentials.key, int(time.time()), remaining)
    if user is None:
        raise RelayError(401, "无效的令牌")
    auth.check_access(key, user, request.client_ip, credentials.forced_channel_id)
    snapshot = await current_options()
    return Caller(
        key=key,
        user=user,
        forced_channel_id=credentials.forced_channel_id,
        options=snapshot,
        table=await current_routing_table(),
        runtime=current,
        rate=ratelimit.ticket_for(key, user, snapshot),
    )
