"""The console's websockets (Django Channels), signed in through the same session cookie as
the pages. Messages are HTML fragments with ids: htmx's ws extension (from django-htmx)
swaps each one into the element of the same id.

- `ChannelTestConsumer` (admins): testing every channel, each result sent to its row as
  soon as it is known. The run starts when the page opens the socket and ends it.
- `LogFollowConsumer` (signed-in users): new log rows as the usage write-back applies them;
  a user gets their own, an admin everyone's (`billing.log_stream`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import connections
from django.template.loader import render_to_string
from django.utils import translation

from accounts.models import Role, UserStatus
from billing import log_stream
from channels_mgmt import testing
from channels_mgmt.models import Channel
from dashboard import themes

DENIED = 4403  # the websocket twin of HTTP 403
NORMAL = 1000  # a finished run: htmx does not reconnect after it


def language_of(scope: dict[str, Any]) -> str:
    """The page's language: the language cookie, else the browser's, else the default."""
    supported = [code for code, _name in settings.LANGUAGES]
    chosen = scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME, "")
    if chosen in supported:
        return chosen
    headers = dict(scope.get("headers", []))
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    for code, _quality in translation.trans_real.parse_accept_lang_header(accept):
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


def render(scope: dict[str, Any], template: str, context: dict[str, Any]) -> str:
    with translation.override(language_of(scope)):
        return render_to_string(themes.template_names(template), context)


def _user(scope: dict[str, Any]) -> Any:
    user = scope.get("user")
    if user is None or not user.is_authenticated or user.status != UserStatus.ENABLED:
        return None
    return user


class ChannelTestConsumer(AsyncWebsocketConsumer):
    """`/ws/channel/test?scope=all|disabled`: one all-channel run per connection."""

    async def connect(self) -> None:
        user = _user(self.scope)
        if user is None or user.role < Role.ADMIN:
            await self.close(code=DENIED)
            return
        await self.accept()
        query = parse_qs(self.scope.get("query_string", b"").decode())
        scope = (query.get("scope") or ["all"])[0]
        self.run = asyncio.ensure_future(self.test_all(scope if scope in testing.SCOPES else "all"))

    async def disconnect(self, code: int) -> None:
        # The run goes on without the page (it holds the lock and applies the rules).
        pass

    async def test_all(self, scope: str) -> None:
        self.tested = 0
        try:
            # A thread of its own, not the shared one of database_sync_to_async: a run takes
            # minutes, and every other consumer's database access (the sign-in of each new
            # socket) would wait for it.
            summary = await sync_to_async(self.run_tests, thread_sensitive=False)(scope)
        except testing.TestsAlreadyRunning:
            await self.send(text_data=await self.status("busy"))
        else:
            await self.send(text_data=await self.status("done", summary=summary))
        await self.close(code=NORMAL)

    def run_tests(self, scope: str) -> testing.RunSummary:
        try:
            return testing.test_all_channels(scope, self.sync_result)
        finally:
            connections.close_all()  # this pool thread's own connections

    def sync_result(self, channel: Channel, outcome: testing.Outcome) -> None:
        """In the run's thread, after each channel: its refreshed row cells to the page."""
        current = Channel.objects.filter(pk=channel.pk).first() or channel
        self.tested += 1
        html = render(
            self.scope,
            "console/partials/channel_live_result.html",
            {"channel": current, "test": outcome.result, "tested": self.tested},
        )
        # The page may have gone away meanwhile: the run goes on without it.
        with contextlib.suppress(Exception):
            async_to_sync(self.send)(text_data=html)

    @database_sync_to_async
    def status(self, state: str, **context: Any) -> str:
        return render(
            self.scope,
            "console/partials/channel_test_run.html",
            {"state": state, "oob": True, **context},
        )


class LogFollowConsumer(AsyncWebsocketConsumer):
    """`/ws/log?model_name=...`: new log rows that match the page's filters."""

    async def connect(self) -> None:
        user = _user(self.scope)
        if user is None:
            await self.close(code=DENIED)
            return
        log_stream.bind_server_loop(asyncio.get_running_loop())
        self.user_id = user.pk
        self.admin = user.role >= Role.ADMIN
        self.filters = self.parse_filters()
        self.group = log_stream.ALL_LOGS_GROUP if self.admin else log_stream.user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    def parse_filters(self) -> dict[str, Any]:
        query = parse_qs(self.scope.get("query_string", b"").decode())

        def text(name: str) -> str:
            return (query.get(name) or [""])[0].strip()

        def number(name: str) -> int:
            value = text(name)
            return int(value) if value.isdigit() else 0

        filters: dict[str, Any] = {
            "type": number("type"),
            "model_name": text("model_name"),
            "token_name": text("token_name"),
        }
        if self.admin:  # the filters only admins have
            filters.update(username=text("username"), channel_id=number("channel"))
        return {name: value for name, value in filters.items() if value}

    def matches(self, log: dict[str, Any]) -> bool:
        if not self.admin and log.get("user_id") != self.user_id:
            return False  # never another user's, whatever the group delivered
        return all(log.get(name) == value for name, value in self.filters.items())

    async def logs_new(self, event: dict[str, Any]) -> None:
        rows = [log for log in event["logs"] if self.matches(log)]
        if rows:
            await self.send(text_data=await self.render_rows(rows))

    @database_sync_to_async
    def render_rows(self, rows: list[dict[str, Any]]) -> str:
        return render(
            self.scope,
            "console/partials/log_live_rows.html",
            {"logs": list(reversed(rows)), "admin": self.admin},  # newest first, as the table
        )
