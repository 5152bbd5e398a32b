"""Issue 9: faults under billed load through real Daphne nodes.

Each test starts its node(s) on rows made beforehand (a user, a limited key, channel A that
fails and channel B that works, `RetryTimes` 3), sends a few dozen concurrent requests (plain
and streamed) while the fault happens, then stops the nodes gracefully and audits the books:
every answer is a success or a clear OpenAI-style error, every billed answer has exactly one
log, the user, key and channel rows moved by exactly the logged quota, and no journal is left
with anything to apply. Each test adds its row to the fault table (see conftest.py).

Faults on shared services are injected without touching them: Redis is a private
`redis-server` this module starts and kills, and the database is reached through a TCP proxy
(tests/fakes/tcp_proxy.py) that cuts every connection. Those faults, and the killed node of a
two-node deployment, need PostgreSQL or MySQL (SQLite is single-node by design): there they
skip, as the multi-node tests do.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from billing.journal import recover_orphaned_journals
from billing.models import ApiKey, Log
from channels_mgmt.models import Channel, ChannelStatus
from oneapi import caching, options
from tests.conftest import REQUIRE_SERVICES, dsn_for, free_port, service_reachable
from tests.factories import make_user
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.tcp_proxy import TcpProxy
from tests.integration.faults.load import (
    CONNECTION,
    CUT,
    OK,
    USER_QUOTA,
    Books,
    Outcome,
    Row,
    audit,
    kinds,
    make_books,
    run_load,
    unclear,
)
from tests.integration.relay_setup import (
    CHAT_MESSAGES,
    CHAT_MODEL,
    DaphneServer,
    start_daphne,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REQUESTS = 60
RETRY_TIMES = "3"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI(api_key="sk-upstream") as a, FakeOpenAI(api_key="sk-upstream") as b:
        yield a, b


@pytest.fixture
def books(transactional_db: None, upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> Books:
    options.set_option("RetryTimes", RETRY_TIMES)
    return make_books(*upstreams)


@pytest.fixture
def servers() -> Iterator[list[DaphneServer]]:
    """Every node a test starts; whatever still runs is stopped (and its logs removed)."""
    started: list[DaphneServer] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def needs_shared_database(why: str) -> None:
    if connection.settings_dict["ENGINE"].endswith("sqlite3"):
        pytest.skip(f"needs PostgreSQL or MySQL (SQL_DSN), as {why}: SQLite is single-node")


def node_env(**extra: str) -> dict[str, str]:
    # A prefix of its own: Redis keys (monitor windows, rate limits) of earlier runs, whose
    # channel and key ids this run's database reuses, cannot leak in.
    return {"CACHE_KEY_PREFIX": f"h5-faults-{secrets.token_hex(4)}", "DEBUG": "false", **extra}


def start(
    servers: list[DaphneServer], data_dir: Path, env: dict[str, str], count: int = 1
) -> list[DaphneServer]:
    nodes = []
    for number in range(count):
        node = start_daphne(data_dir / f"node-{number}", **env)
        servers.append(node)
        nodes.append(node)
    return nodes


def stop_and_check_drained(nodes: list[DaphneServer]) -> None:
    """SIGTERM every live node (it writes its journal back and removes it), then nothing is
    left for a recovery to apply."""
    for node in nodes:
        if node.process.poll() is None:
            assert node.terminate() == 0, node.output()[-3000:]
    for node in nodes:
        assert recover_orphaned_journals(node.journal_dir) == 0
        assert node.journals() == []


def record(fault_table: list[Row], fault: str, books: Books, outcomes: list[Outcome]) -> Row:
    row = audit(fault, books, outcomes)
    fault_table.append(row)
    return row


def assert_clean(row: Row, outcomes: list[Outcome], connection_errors: bool = False) -> None:
    assert unclear(outcomes, connection_errors_allowed=connection_errors) == [], kinds(outcomes)
    assert row.lost == 0, row.notes


def chat(base_url: str, api_key: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": CHAT_MODEL, "messages": CHAT_MESSAGES},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )


# --------------------------------------------------------------------------- upstream faults


def test_1_a_hung_channel_times_out_and_the_retry_goes_to_the_other(
    books: Books,
    upstreams: tuple[FakeOpenAI, FakeOpenAI],
    servers: list[DaphneServer],
    tmp_path: Path,
    fault_table: list[Row],
) -> None:
    # given: channel A hangs far beyond RELAY_TIMEOUT
    hung, healthy = upstreams
    hung.scenario = "timeout"
    hung.hang_seconds = 30
    nodes = start(servers, tmp_path, node_env(RELAY_TIMEOUT="2"))

    # when
    started = time.monotonic()
    outcomes = run_load([n.base_url for n in nodes], books.api_key, REQUESTS, duration=1.0)
    elapsed = time.monotonic() - started
    stop_and_check_drained(nodes)

    # then: every request ended on B, those that tried A first after one timeout
    row = record(fault_table, "1 upstream timeout", books, outcomes)
    assert_clean(row, outcomes)
    assert (row.ok, row.errors, row.billed) == (REQUESTS, 0, REQUESTS)
    assert len(healthy.requests) == REQUESTS
    assert 0 < len(hung.requests) < REQUESTS
    assert 2 <= elapsed < 15
    assert Log.objects.filter(channel_id=books.channels[0].pk).count() == 0


def test_2_connection_resets_are_retried_on_the_other_channel(
    books: Books,
    upstreams: tuple[FakeOpenAI, FakeOpenAI],
    servers: list[DaphneServer],
    tmp_path: Path,
    fault_table: list[Row],
) -> None:
    resetting, healthy = upstreams
    resetting.scenario = "reset"
    nodes = start(servers, tmp_path, node_env())

    outcomes = run_load([n.base_url for n in nodes], books.api_key, REQUESTS, duration=1.0)
    stop_and_check_drained(nodes)

    row = record(fault_table, "2 connection resets", books, outcomes)
    assert_clean(row, outcomes)
    assert (row.ok, row.errors, row.billed) == (REQUESTS, 0, REQUESTS)
    assert len(healthy.requests) == REQUESTS
    assert 0 < len(resetting.requests) < REQUESTS


def test_3_a_5xx_burst_is_retried_and_the_metric_rule_disables_the_channel(
    books: Books,
    upstreams: tuple[FakeOpenAI, FakeOpenAI],
    servers: list[DaphneServer],
    tmp_path: Path,
    fault_table: list[Row],
) -> None:
    failing, healthy = upstreams
    failing.scenario = "error_500"
    env = node_env(
        ENABLE_METRIC="true", METRIC_QUEUE_SIZE="10", METRIC_SUCCESS_RATE_THRESHOLD="0.8"
    )
    nodes = start(servers, tmp_path, env)
    channel_a = books.channels[0]

    outcomes = run_load([n.base_url for n in nodes], books.api_key, REQUESTS, duration=1.5)

    # then: A failed ten times in a row (its window), so the rule disabled it...
    def status_of_a() -> int:
        return Channel.objects.get(pk=channel_a.pk).status

    wait_until(lambda: status_of_a() == ChannelStatus.AUTO_DISABLED, what="A auto-disabled")
    # ...and from then on nothing is sent to it
    tried_a = len(failing.requests)
    assert tried_a >= 10
    for _ in range(10):
        response = chat(nodes[0].base_url, books.api_key)
        assert response.status_code == 200, response.text
        outcomes.append(
            Outcome(nodes[0].base_url, False, OK, 200, response.headers["x-oneapi-request-id"])
        )
    assert len(failing.requests) == tried_a
    stop_and_check_drained(nodes)

    row = record(fault_table, "3 5xx burst", books, outcomes)
    assert_clean(row, outcomes)
    assert (row.ok, row.errors, row.billed) == (REQUESTS + 10, 0, REQUESTS + 10)
    assert len(healthy.requests) == REQUESTS + 10


def test_4_a_stream_cut_mid_way_ends_in_an_error_event_and_is_billed_for_what_came(
    books: Books,
    upstreams: tuple[FakeOpenAI, FakeOpenAI],
    servers: list[DaphneServer],
    tmp_path: Path,
    fault_table: list[Row],
) -> None:
    dropping, _ = upstreams
    dropping.scenario = "drop_mid_stream"  # streams only; plain answers from A are whole
    nodes = start(servers, tmp_path, node_env())

    outcomes = run_load([n.base_url for n in nodes], books.api_key, REQUESTS, duration=1.0)
    stop_and_check_drained(nodes)

    row = record(fault_table, "4 stream cut mid-way", books, outcomes)
    assert_clean(row, outcomes)
    cut = [o for o in outcomes if o.kind == CUT]
    assert cut, kinds(outcomes)
    assert all(o.stream and "stream interrupted" in o.detail for o in cut)
    assert row.billed == REQUESTS  # the cut ones too
    full = Log.objects.filter(channel_id=books.channels[1].pk).first()
    assert full is not None
    for outcome in cut:
        log = Log.objects.get(request_id=outcome.request_id)
        assert 0 < log.completion_tokens < full.completion_tokens


# --------------------------------------------------------------------------- Redis


class PrivateRedis:
    """A redis-server of this test's own, on a free port, without persistence."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: service_reachable("127.0.0.1", self.port), what="redis-server")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    needs_shared_database("nodes share Redis only in a multi-node deployment")
    if shutil.which("redis-server") is None:
        message = "needs the redis-server binary to start a Redis it may kill"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (REQUIRE_SERVICES=1)")
        pytest.skip(message)
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.parametrize(
    "fault",
    ["5 Redis killed, restarted empty", "5b Redis frozen 2 s (SIGSTOP)"],
    ids=["killed", "frozen"],
)
def test_5_redis_failing_under_load_loses_nothing_and_limits_come_back(
    books: Books,
    servers: list[DaphneServer],
    private_redis: PrivateRedis,
    tmp_path: Path,
    fault_table: list[Row],
    fault: str,
) -> None:
    # given: the load's key has a rate limit (far above the load), so every request takes
    # the Redis path of the rate limiter too
    ApiKey.objects.filter(pk=books.key.pk).update(rpm_limit=100_000)
    env = node_env(REDIS_CONN_STRING=private_redis.url, SYNC_FREQUENCY="3600")
    nodes = start(servers, tmp_path, env, count=2)
    urls = [n.base_url for n in nodes]

    # when: a second into the load Redis dies and is back (empty) 1.5 s later, or it stops
    # answering for 2 s (a frozen process: connections open, nothing read)
    if "killed" in fault:
        during = [(1.0, private_redis.kill), (2.5, private_redis.start)]
    else:
        during = [(1.0, private_redis.freeze), (3.0, private_redis.thaw)]
    outcomes = run_load(urls, books.api_key, 80, duration=4.0, during=during)

    # then: rate limits are enforced again, in Redis and across both nodes
    # (another user's key, so that its charges stay out of the books audited below)
    limited = ApiKey.objects.create(
        user=make_user(quota=USER_QUOTA),
        key=secrets.token_hex(24),
        name="rpm 3",
        rpm_limit=3,
        unlimited_quota=True,
    )
    statuses = [chat(urls[n % 2], "sk-" + limited.key).status_code for n in range(4)]
    stop_and_check_drained(nodes)

    row = record(fault_table, fault, books, outcomes)
    assert_clean(row, outcomes)
    assert statuses == [200, 200, 200, 429], statuses


# --------------------------------------------------------------------------- database


def proxied_dsn(proxy: TcpProxy) -> str:
    settings_dict: dict[str, Any] = {**connection.settings_dict, "HOST": "127.0.0.1"}
    settings_dict["PORT"] = str(proxy.port)
    return dsn_for(settings_dict)


@pytest.mark.parametrize(
    "fault",
    ["6 database unreachable 2 s", "6b database stalled 2 s"],
    ids=["cut", "stalled"],
)
def test_6_a_database_outage_is_served_from_memory_and_written_back_afterwards(
    books: Books,
    servers: list[DaphneServer],
    tmp_path: Path,
    fault_table: list[Row],
    fault: str,
) -> None:
    needs_shared_database("the database is a server reached over TCP")
    host = connection.settings_dict.get("HOST") or "127.0.0.1"
    port = int(connection.settings_dict.get("PORT") or 0) or (
        5432 if connection.vendor == "postgresql" else 3306
    )
    with TcpProxy(host, port) as proxy:
        nodes = start(servers, tmp_path, node_env(SQL_DSN=proxied_dsn(proxy)))
        urls = [n.base_url for n in nodes]
        # Warm: the key, user and balances are in the node's memory before the outage.
        warm = run_load(urls, books.api_key, 2)
        assert [o.kind for o in warm] == [OK, OK], warm

        # when: every connection is reset and new ones refused for 2 s, or nothing gets
        # through the open ones for 2 s (a stalled network: no error, no answer)
        if "unreachable" in fault:
            during = [(1.0, proxy.cut), (3.0, proxy.restore)]
        else:
            during = [(1.0, proxy.pause), (3.0, proxy.resume)]
        outcomes = warm + run_load(urls, books.api_key, 80, duration=4.0, during=during)

        # then: once the database is back the write-back catches up while the node runs
        billable = sum(1 for o in outcomes if o.billable)
        wait_until(
            lambda: Log.objects.filter(user_id=books.user.pk).count() == billable,
            timeout=20,
            what="the write-back to catch up",
        )
        if "unreachable" in fault:
            assert proxy.refused > 0  # the node did try the database during the outage
        stop_and_check_drained(nodes)

    row = record(fault_table, fault, books, outcomes)
    assert_clean(row, outcomes)
    assert (row.ok, row.errors) == (82, 0), kinds(outcomes)


def test_6c_a_commit_whose_answer_is_lost_is_applied_once_and_leaves_no_phantom_charge(
    books: Books,
    upstreams: tuple[FakeOpenAI, FakeOpenAI],
    servers: list[DaphneServer],
    tmp_path: Path,
    fault_table: list[Row],
) -> None:
    """The write-back's COMMIT reaches the database, which commits, but the node gets a reset
    instead of the answer: it cannot tell whether the batch was applied. The database must
    hold it once (the journal offset commits with it), and the node's balances must not keep
    counting it as pending (a phantom charge that would refuse a key the database says can
    still pay)."""
    needs_shared_database("the database is a server reached over TCP")
    for upstream in upstreams:  # expensive answers: a lost batch shows in the balance
        upstream.completion_tokens = 1000
    options.set_option("PreConsumedQuota", "0")  # a request is admitted on a small balance
    host = connection.settings_dict.get("HOST") or "127.0.0.1"
    port = int(connection.settings_dict.get("PORT") or 0) or (
        5432 if connection.vendor == "postgresql" else 3306
    )
    with TcpProxy(host, port) as proxy:
        nodes = start(servers, tmp_path, node_env(SQL_DSN=proxied_dsn(proxy)))
        urls = [n.base_url for n in nodes]

        outcomes = run_load(
            urls,
            books.api_key,
            40,
            duration=3.0,
            during=[(1.0, lambda: proxy.lose_reply_to(b"COMMIT"))],
        )
        billable = sum(1 for o in outcomes if o.billable)
        wait_until(
            lambda: Log.objects.filter(user_id=books.user.pk).count() == billable,
            timeout=20,
            what="the write-back to catch up",
        )
        assert proxy.replies_lost == 1
        time.sleep(1.0)  # every flush done: nothing is pending on the node any more
        row = record(fault_table, "6c database commit answer lost", books, outcomes)

        # then: a key with 400 left in the database (its charges all written back) is
        # served: the node's own view of the balance has no phantom charge in it
        ApiKey.objects.filter(pk=books.key.pk).update(remain_quota=400)
        caching.invalidate(caching.KEY, books.key.key)
        time.sleep(1.5)  # the node hears of it (event poll) and reloads the balance
        probe = chat(urls[0], books.api_key)
        stop_and_check_drained(nodes)

    assert_clean(row, outcomes)
    assert (row.ok, row.errors) == (40, 0), kinds(outcomes)
    # (before 392082b the batch stayed pending for good: 401 "该令牌额度已用尽" here)
    assert probe.status_code == 200, probe.text


# --------------------------------------------------------------------------- a node dies


def test_7_a_node_killed_under_load_has_its_journal_recovered(
    books: Books,
    upstreams: tuple[FakeOpenAI, FakeOpenAI],
    servers: list[DaphneServer],
    tmp_path: Path,
    fault_table: list[Row],
) -> None:
    needs_shared_database("two nodes share the database")
    for upstream in upstreams:  # slow answers, so the kill finds requests in flight
        upstream.scenario = "timeout"
        upstream.hang_seconds = 0.4
    survivor, victim = start(servers, tmp_path, node_env(), count=2)

    outcomes = run_load(
        [survivor.base_url, victim.base_url],
        books.api_key,
        80,
        duration=3.0,
        during=[(1.5, victim.kill)],
    )
    assert victim.process.returncode == -signal.SIGKILL
    (dead_journal,) = victim.journals()

    # then: a node started on the dead node's data directory applies its journal at once
    restarted = start_daphne(victim.data_dir, **node_env())
    servers.append(restarted)
    assert not dead_journal.exists()
    stop_and_check_drained([survivor, restarted])

    row = record(fault_table, "7 node SIGKILLed", books, outcomes)
    assert_clean(row, outcomes, connection_errors=True)
    dropped = [o for o in outcomes if o.kind == CONNECTION]
    assert dropped, kinds(outcomes)
    assert {o.node for o in dropped} == {victim.base_url}
    assert all(o.kind == OK for o in outcomes if o.node == survivor.base_url)
