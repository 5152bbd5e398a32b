from __future__ import annotations

import threading

import pytest
from django.db import transaction
from django.test import override_settings

from oneapi import cache_bus, caching

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_invalidation_reaches_a_subscriber_through_redis(redis_url: str) -> None:
    heard: list[str] = []
    arrived = threading.Event()

    @caching.on_invalidate("test-bus")
    def handler(ident: str) -> None:
        heard.append(ident)
        arrived.set()

    subscriber = cache_bus.Subscriber(redis_url)
    subscriber.start()
    try:
        assert subscriber.ready.wait(5)
        with override_settings(REDIS_CONN_STRING=redis_url):
            cache_bus._client = None
            with transaction.atomic():
                caching.invalidate("test-bus", "42")
                heard.clear()  # the local run; what follows must come from Redis
                arrived.clear()
            assert arrived.wait(5), "no event arrived over Redis"
    finally:
        subscriber.stop()
        subscriber.join(timeout=5)
        caching._handlers["test-bus"].remove(handler)
        cache_bus._client = None
    assert "42" in heard


def test_a_rolled_back_write_publishes_nothing(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(cache_bus.channel_name())
    try:
        with override_settings(REDIS_CONN_STRING=redis_url):
            cache_bus._client = None
            with pytest.raises(RuntimeError), transaction.atomic():
                caching.invalidate(caching.KEY, "x" * 48)
                raise RuntimeError
            caching.invalidate(caching.KEY, "y" * 48)
        messages = []
        for _ in range(20):
            message = pubsub.get_message(timeout=0.2)
            if message:
                messages.append(cache_bus.decode(message["data"]))
            if messages:
                break
        assert messages == [(caching.KEY, "y" * 48)]
    finally:
        pubsub.close()
        client.close()
        cache_bus._client = None
