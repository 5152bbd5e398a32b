"""Low-quota emails (One API's reminder in `DecreaseTokenQuota`), as a periodic scan.

A user is mailed once when their quota falls under QuotaRemindThreshold ("您的额度即将用尽")
and once more when it reaches 0 ("您的额度已用尽"). Climbing back to or above the threshold
re-arms both; climbing from empty to merely low re-arms the "empty" mail only.

Only users who have spent something are considered: a new account whose quota simply starts
at 0 (QuotaForNewUser's default) never crossed anything and gets no mail.

What was sent lives outside the database (no table for it): in the shared Django cache with
Redis; without Redis the cache is per process (each Celery worker child has its own, and a
restart empties it), so a small JSON file under DATA_DIR stands in.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from html import escape
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives

from accounts import email as mail
from accounts.models import User, UserStatus
from oneapi import options

logger = logging.getLogger(__name__)

LOW, EMPTY = 1, 2
SUBJECTS = {LOW: "您的额度即将用尽", EMPTY: "您的额度已用尽"}

STATE_KEY = "billing:quota_alerts:sent"
LOCK_KEY = "billing:quota_alerts:lock"
STATE_TTL_SECONDS = 180 * 24 * 3600
LOCK_TTL_SECONDS = 600


class ScanAlreadyRunning(Exception):
    pass


def level(quota: int, threshold: int) -> int:
    """0 above the threshold, LOW under it, EMPTY at or below zero."""
    if quota <= 0:
        return EMPTY
    return LOW if quota < threshold else 0


def top_up_link() -> str:
    return f"{options.get_str('ServerAddress').rstrip('/')}/topup"


def reminder(to: str, alert: int, quota: int) -> EmailMultiAlternatives:
    """One API's text: the state, the quota left, and the top-up page."""
    prompt = SUBJECTS[alert]
    link = top_up_link()
    text = f"{prompt}，剩余额度为 {quota}，为了不影响您的使用，请及时充值。\n充值链接：{link}"
    safe_link = escape(link, quote=True)
    html = (
        f"{prompt}，剩余额度为 {quota}，为了不影响您的使用，请及时充值。<br/>"
        f"充值链接：<a href='{safe_link}'>{safe_link}</a>"
    )
    message = EmailMultiAlternatives(prompt, text, mail.from_address(), [to])
    message.attach_alternative(html, "text/html")
    return message


# ---------------------------------------------------------------------------- state


class State:
    """user id -> the level last mailed; saved after every change so a crash resends none."""

    def __init__(self, sent: dict[int, int], path: Path | None) -> None:
        self.sent = sent
        self._path = path

    def save(self) -> None:
        data = {str(user_id): alert for user_id, alert in self.sent.items()}
        if self._path is None:
            cache.set(STATE_KEY, data, timeout=STATE_TTL_SECONDS)
            return
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data), encoding="utf-8")
        os.replace(temporary, self._path)


def _parse(data: object) -> dict[int, int]:
    if not isinstance(data, dict):
        return {}
    return {int(key): int(value) for key, value in data.items() if str(key).isdigit()}


@contextmanager
def _cache_state() -> Iterator[State]:
    token = secrets.token_hex(8)
    if not cache.add(LOCK_KEY, token, timeout=LOCK_TTL_SECONDS):
        raise ScanAlreadyRunning
    try:
        yield State(_parse(cache.get(STATE_KEY)), None)
    finally:
        if cache.get(LOCK_KEY) == token:
            cache.delete(LOCK_KEY)


@contextmanager
def _file_state() -> Iterator[State]:
    directory = Path(settings.DATA_DIR) / "state"
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "quota-alerts.lock").open("ab") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ScanAlreadyRunning from None
        path = directory / "quota-alerts.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        yield State(_parse(data), path)


def locked_state() -> AbstractContextManager[State]:
    """The sent-mail state, held exclusively for one scan (raises ScanAlreadyRunning)."""
    return _cache_state() if settings.REDIS_ENABLED else _file_state()


# ---------------------------------------------------------------------------- scan


@dataclass
class ScanSummary:
    sent: int = 0
    failed: int = 0
    rearmed: int = 0


def _candidates(threshold: int) -> list[tuple[int, str, int]]:
    """(id, email, quota) of enabled, mailable users under the threshold who spent quota."""
    return list(
        User.objects.filter(
            status=UserStatus.ENABLED, used_quota__gt=0, quota__lt=max(threshold, 1)
        )
        .exclude(email="")
        .values_list("pk", "email", "quota")
    )


def _mail(user_id: int, address: str, alert: int, quota: int) -> bool:
    try:
        mail.send(reminder(address, alert, quota))
    except mail.SendFailed as error:
        logger.warning("quota reminder to user #%s failed: %s", user_id, error.message)
        return False
    return True


def _rearm(state: State, seen: set[int], threshold: int) -> int:
    """Forget users no longer low; lower the mark of users who climbed from empty to low."""
    stale = [user_id for user_id in state.sent if user_id not in seen]
    quotas = dict(User.objects.filter(pk__in=stale).values_list("pk", "quota"))
    rearmed = 0
    for user_id in stale:
        current = level(quotas[user_id], threshold) if user_id in quotas else 0
        if current == 0:
            del state.sent[user_id]
            rearmed += 1
        elif current < state.sent[user_id]:
            state.sent[user_id] = current
    return rearmed


def send_quota_alerts() -> ScanSummary:
    """Mail every user whose quota crossed a level since the last scan.

    Raises ScanAlreadyRunning when another scan holds the state."""
    threshold = options.get_int("QuotaRemindThreshold")
    summary = ScanSummary()
    if not options.get_str("SMTPServer").strip():
        return summary  # nothing can be sent; users stay unmarked until SMTP is set up
    with locked_state() as state:
        seen: set[int] = set()
        for user_id, address, quota in _candidates(threshold):
            seen.add(user_id)
            current, before = level(quota, threshold), state.sent.get(user_id, 0)
            if current < before:
                state.sent[user_id] = current
            if current <= before:
                continue
            if _mail(user_id, address, current, quota):
                state.sent[user_id] = current
                state.save()
                summary.sent += 1
            else:
                summary.failed += 1  # not marked: the next scan tries again
        summary.rearmed = _rearm(state, seen, threshold)
        state.save()
    return summary
