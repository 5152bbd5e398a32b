"""Relay overhead: wrk against an nginx mock upstream, straight and through the gateway.

    .venv/bin/python bench/relay_overhead.py                       # the full run (~3 min)
    .venv/bin/python bench/relay_overhead.py --servers uvicorn --seconds 3 --concurrency 32

Needs `wrk` and `nginx` (Debian: `apt-get install wrk nginx-light`). With two or more CPUs the
gateway is pinned to CPU 0 and nginx + wrk to CPU 1 (taskset), as in the performance issue.

The database is a throwaway SQLite file under a temporary DATA_DIR, or the one SQL_DSN names
when set (an empty scratch database: the run adds a user and channels). Every request through
the gateway is a real billed request (key auth, routing, reservation, settlement, consume log)
by one user with one limited key over three channels (fixed JSON answer, fixed SSE stream, a
slow stream). After each server's runs the script checks the books: consume logs == upstream
requests nginx served for the gateway, every log carries the same quota, and the user's
`used_quota`/`request_count` and the key's `remain_quota` moved by exactly the sums.

It prints, per server, mode and concurrency: requests/s (and as a share of direct), p50/p99,
latency added over direct, CPU seconds per 1,000 requests and RSS; `--write` puts the table
with versions and machine load into bench/RESULTS.md (between its markers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from oneapi.cli import SERVERS, web_command

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

# Fresh per run: the books are read by this user, and keys are unique across a database.
USERNAME = f"bench{secrets.randbelow(10**8)}"
KEY = secrets.token_hex(24)
KEY_QUOTA = 10**15
MODELS = {"json": "gpt-3.5-turbo", "sse": "gpt-4o-mini", "slow": "gpt-4o"}
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]
USAGE = {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MARK_START = "<!-- bench:start -->"
MARK_END = "<!-- bench:end -->"


# --------------------------------------------------------------------------- the mock


def completion_body() -> str:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "gpt-3.5-turbo-0125",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello, benchmark! Nice to meet."},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        },
        separators=(",", ":"),
    )


def stream_body() -> str:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000}
    base["model"] = "gpt-4o-mini"
    events = []
    for word in ["Hello", ",", " bench", "mark", "!", " Nice", " to", " meet", "."]:
        choice = {"index": 0, "delta": {"content": word}, "finish_reason": None}
        events.append({**base, "choices": [choice]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**base, "choices": [], "usage": USAGE})
    lines = [f"data: {json.dumps(event, separators=(',', ':'))}\n\n" for event in events]
    return "".join(lines) + "data: [DONE]\n\n"


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  log_format counted '$request_uri';
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location /json/ {{ default_type application/json; return 200 '{json}'; }}
    location /sse/ {{ default_type text/event-stream; return 200 '{sse}'; }}
    # The gateway's channels point here: the access log counts the upstream requests.
    location /gw/json/ {{
      access_log {tmp}/upstream.log counted;
      default_type application/json; return 200 '{json}';
    }}
    location /gw/sse/ {{
      access_log {tmp}/upstream.log counted;
      default_type text/event-stream; return 200 '{sse}';
    }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned(cpu: str | None, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if cpu is not None else command


@contextlib.contextmanager
def nginx_mock(tmp: Path, cpu: str | None) -> Iterator[int]:
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(tmp=tmp, port=port, json=completion_body(), sse=stream_body())
    )
    process = subprocess.Popen(pinned(cpu, ["nginx", "-c", str(conf), "-p", str(tmp)]))
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def slow_mock(gap: float, chunks: int) -> Iterator[int]:
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "slow_upstream.py"), "--gap", str(gap)]
        + ["--chunks", str(chunks)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.kill()
        process.wait()


def wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def upstream_count(tmp: Path) -> int:
    log = tmp / "upstream.log"
    if not log.exists():
        return 0
    with log.open("rb") as lines:
        return sum(1 for _ in lines)


# ----------------------------------------------------------------------- the database


def prepare_database(data_dir: Path, mock_port: int, slow_port: int) -> None:
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "oneapi.settings"
    os.environ["ONEAPI_QUIET_SECRET_WARNING"] = "1"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import User
    from billing.models import ApiKey
    from channels_mgmt.services import create_channels

    user = User.objects.create_user(USERNAME, "benchpass", quota=KEY_QUOTA)
    ApiKey.objects.create(user=user, key=KEY, name="bench", remain_quota=KEY_QUOTA)
    bases = {
        "json": f"http://127.0.0.1:{mock_port}/gw/json",
        "sse": f"http://127.0.0.1:{mock_port}/gw/sse",
        "slow": f"http://127.0.0.1:{slow_port}",
    }
    for name, base in bases.items():
        create_channels(
            {
                "type": 1,
                "name": f"bench-{name}",
                "key": "sk-upstream",
                "base_url": base,
                "models": MODELS[name],
                "group": "default",
            }
        )


@dataclass(frozen=True)
class Books:
    logs: int
    log_quota: int
    distinct_quotas: int
    used_quota: int
    request_count: int
    key_remain: int

    @staticmethod
    def read() -> Books:
        from django.db.models import Count, Sum

        from accounts.models import User
        from billing.models import ApiKey, Log, LogType

        logs = Log.objects.filter(type=LogType.CONSUME, username=USERNAME)
        totals = logs.aggregate(n=Count("id"), quota=Sum("quota"))
        user = User.objects.get(username=USERNAME)
        return Books(
            logs=totals["n"],
            log_quota=totals["quota"] or 0,
            distinct_quotas=logs.values("model_name", "quota").distinct().count(),
            used_quota=user.used_quota,
            request_count=user.request_count,
            key_remain=ApiKey.objects.get(key=KEY).remain_quota,
        )


def check_books(before: Books, after: Books, upstream_requests: int) -> list[str]:
    """What does not add up (empty: the books balance)."""
    logs = after.logs - before.logs
    quota = after.log_quota - before.log_quota
    problems = []
    if logs != upstream_requests:
        problems.append(f"{logs} consume logs for {upstream_requests} upstream requests")
    if after.used_quota - before.used_quota != quota:
        problems.append(f"used_quota moved {after.used_quota - before.used_quota}, logs {quota}")
    if after.request_count - before.request_count != logs:
        problems.append(f"request_count moved {after.request_count - before.request_count}")
    if before.key_remain - after.key_remain != quota:
        problems.append(f"key remain_quota moved {before.key_remain - after.key_remain}")
    if after.distinct_quotas > len(MODELS):
        problems.append(f"{after.distinct_quotas} distinct (model, quota) pairs in the logs")
    return problems


def quiet_upstream_count(tmp: Path, seconds: float = 30) -> int:
    """The upstream request count once it stops moving: requests wrk gave up on at the end of
    a run are still being relayed (and billed) for a moment."""
    deadline = time.monotonic() + seconds
    count = upstream_count(tmp)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = upstream_count(tmp)
        if now == count:
            break
        count = now
    return count


def settled_books(before: Books, upstream_requests: int, seconds: float = 20) -> Books:
    """The books once the write-back caught up (it runs every 0.5 s)."""
    deadline = time.monotonic() + seconds
    while True:
        after = Books.read()
        if not check_books(before, after, upstream_requests) or time.monotonic() > deadline:
            return after
        time.sleep(0.25)


# ------------------------------------------------------------------------ the gateway


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int

    def pids(self) -> list[int]:
        """The server and its descendants (granian serves from a child process)."""
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    todo.extend(int(child) for child in task.read_text().split())
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLOCK_TICKS

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident set of the largest process, in MB."""
        current = peak = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                status = dict(
                    line.split(":", 1)
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                )
                current = max(current, int(status["VmRSS"].split()[0]))
                peak = max(peak, int(status["VmHWM"].split()[0]))
        return current / 1024, peak / 1024


@contextlib.contextmanager
def gateway(server: str, data_dir: Path, cpu: str | None, app_root: Path) -> Iterator[Gateway]:
    port = free_port()
    command = web_command(server, "127.0.0.1", port)
    env = {**os.environ, "DATA_DIR": str(data_dir), "PYTHONPATH": str(app_root)}
    log = (data_dir / f"{server}.log").open("wb")
    process = subprocess.Popen(pinned(cpu, command), env=env, cwd=app_root, stdout=log, stderr=log)
    try:
        wait_for_port(port, 60)
        yield Gateway(process, port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# ------------------------------------------------------------------------------ the load


@dataclass
class Run:
    label: str
    mode: str
    concurrency: int
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_per_1k: float = 0.0
    rss_mb: float = 0.0
    gateway_busy: float = 0.0  # share of the gateway's CPU it used
    others_busy: float = 0.0  # share of that CPU other processes took (a shared machine)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def body(mode: str) -> str:
    payload: dict[str, object] = {"model": MODELS[mode], "messages": MESSAGES}
    if mode == "sse":
        payload["stream"] = True
    return json.dumps(payload)


def wrk(url: str, key: str, mode: str, concurrency: int, seconds: int, cpu: str | None) -> Run:
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s"]
    command += ["-s", str(BENCH / "chat.lua"), url]
    env = {**os.environ, "BENCH_BODY": body(mode), "BENCH_KEY": key}
    result = subprocess.run(pinned(cpu, command), env=env, capture_output=True, text=True)
    line = next((x for x in result.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {result.stdout}{result.stderr}")
    data = json.loads(line[6:])
    errors = sum(data[name] for name in ("status", "connect", "read", "write", "timeout"))
    return Run(
        label="",
        mode=mode,
        concurrency=concurrency,
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=errors,
        p50_ms=data["p50"] / 1000,
        p99_ms=data["p99"] / 1000,
    )


def profile(gw: Gateway, directory: str | None, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the gateway until it gets SIGINT (needs ptrace rights)."""
    if directory is None:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    command = ["py-spy", "record", "--format", "raw", "--rate", "200"]
    command += ["-o", str(Path(directory) / f"{name}.txt"), "--pid", str(gw.pids()[-1])]
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([py_spy, *command[1:]], stdout=subprocess.DEVNULL)


def slow_stream_gaps(port: int) -> list[float]:
    """Seconds between the events of one slow stream, as the client receives them."""
    import httpx

    payload = {"model": MODELS["slow"], "messages": MESSAGES, "stream": True}
    arrivals = []
    with httpx.stream(
        "POST",
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json=payload,
        headers={"Authorization": f"Bearer sk-{KEY}"},
        timeout=30,
    ) as response:
        response.raise_for_status()
        started = time.perf_counter()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.perf_counter() - started)
    return [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]


# ---------------------------------------------------------------------------- reporting


def uptime_load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def versions() -> str:
    packages = ["django", "daphne", "twisted", "uvicorn", "uvloop", "granian", "aiohttp"]
    packages += ["httpx", "httpx-aiohttp", "orjson"]
    found = []
    for name in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"Python {platform.python_version()}, {', '.join(found)}; "
        f"{nginx.replace('nginx version: ', '')}; {wrk_version.split(' [')[0].strip()}; "
        f"commit {commit}; {os.cpu_count()} × {cpu}"
    )


def row(run: Run, direct: Run | None) -> str:
    share = f"{run.rate / direct.rate:.4f}" if direct else "1"
    added = f"{run.p50_ms - direct.p50_ms:+.2f}" if direct else ""
    cpu = f"{run.cpu_per_1k:.2f}" if run.cpu_per_1k else ""
    rss = f"{run.rss_mb:.0f}" if run.rss_mb else ""
    busy = f"{run.gateway_busy:.0%} / {run.others_busy:.0%}" if run.cpu_per_1k else ""
    return (
        f"| {run.label} | {run.mode} | {run.concurrency} | {run.rate:,.0f} | {share} | "
        f"{run.p50_ms:.2f} | {run.p99_ms:.2f} | {added} | {cpu} | {busy} | {rss} | "
        f"{run.errors} |"
    )


HEADER = (
    "| server | mode | c | req/s | × direct | p50 ms | p99 ms | added p50 ms | "
    "CPU s / 1k req | CPU 0: gateway / others | RSS MB | errors |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def cpu_busy_seconds(cpu: str | None) -> float:
    """Seconds CPU `cpu` was busy so far (all processes), from /proc/stat."""
    if cpu is None:
        return 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, line.split()[1:9])
            return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    return 0.0


def measured(
    gw: Gateway, url: str, mode: str, concurrency: int, seconds: int, cpus: tuple[str | None, ...]
) -> Run:
    """One wrk run through the gateway, with the CPU it and its neighbours used meanwhile."""
    gateway_cpu, load_cpu = cpus
    own, busy = gw.cpu_seconds(), cpu_busy_seconds(gateway_cpu)
    run = wrk(url, f"sk-{KEY}", mode, concurrency, seconds, load_cpu)
    own, busy = gw.cpu_seconds() - own, cpu_busy_seconds(gateway_cpu) - busy
    run.cpu_per_1k = own / max(run.requests, 1) * 1000
    run.gateway_busy = own / run.seconds
    run.others_busy = max(busy - own, 0.0) / run.seconds if gateway_cpu is not None else 0.0
    run.rss_mb = gw.rss_mb()[0]
    return run


def soak(gw: Gateway, url: str, total: int, cpus: tuple[str | None, ...]) -> tuple[int, list[str]]:
    """Non-streaming c=32 until `total` requests: RSS after each slice, to see it level off."""
    served, points = 0, []
    while served < total:
        run = measured(gw, url, "json", 32, 5, cpus)
        served += run.requests
        points.append(f"{served // 1000}k: {run.rss_mb:.0f}")
    return served, points


def write_results(text: str) -> None:
    path = BENCH / "RESULTS.md"
    current = (
        path.read_text() if path.exists() else f"# Benchmark results\n\n{MARK_START}\n{MARK_END}\n"
    )
    head, _, rest = current.partition(MARK_START)
    _, _, tail = rest.partition(MARK_END)
    path.write_text(f"{head}{MARK_START}\n{text}\n{MARK_END}{tail}")


# ---------------------------------------------------------------------------------- main


def require_tools() -> None:
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        sys.exit(
            f"missing: {', '.join(missing)}. Install them with "
            "`apt-get install -y wrk nginx-light` (Debian/Ubuntu)."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--concurrency", default="1,32,128", help="comma-separated")
    parser.add_argument("--modes", default="json,sse", help="json (non-streaming), sse")
    parser.add_argument("--servers", default="daphne,uvicorn", help=f"of {', '.join(SERVERS)}")
    parser.add_argument("--slow-gap", type=float, default=0.2, help="seconds between slow chunks")
    parser.add_argument(
        "--soak", type=int, default=0, help="then this many more requests, watching RSS"
    )
    parser.add_argument(
        "--app-root",
        default=str(ROOT),
        help="serve the gateway from this copy of the code (A/B runs of a change)",
    )
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record each server with py-spy (collapsed stacks, DIR/<server>-<mode>.txt)",
    )
    parser.add_argument("--note", default="", help="a line for RESULTS.md (what changed)")
    args = parser.parse_args(argv)
    require_tools()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    modes = args.modes.split(",")
    servers = args.servers.split(",")
    many_cpus = (os.cpu_count() or 1) >= 2
    gateway_cpu, load_cpu = ("0", "1") if many_cpus else (None, None)
    cpus = (gateway_cpu, load_cpu)
    load_before = uptime_load()
    runs: list[Run] = []
    problems: list[str] = []
    lines: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="oneapi-bench-") as tmp_name,
        nginx_mock(Path(tmp_name), load_cpu) as mock_port,
        slow_mock(args.slow_gap, 5) as slow_port,
    ):
        tmp = Path(tmp_name)
        prepare_database(tmp, mock_port, slow_port)
        directs: dict[tuple[str, int], Run] = {}
        for mode in modes:
            for concurrency in concurrencies:
                url = f"http://127.0.0.1:{mock_port}/{mode}/v1/chat/completions"
                run = wrk(url, "sk-upstream", mode, concurrency, args.seconds, load_cpu)
                run.label = "direct"
                directs[mode, concurrency] = run
                runs.append(run)
                print(row(run, None), flush=True)
        for server in servers:
            before, upstream_before, served = Books.read(), upstream_count(tmp), 0
            with gateway(server, tmp, gateway_cpu, Path(args.app_root).resolve()) as gw:
                url = f"http://127.0.0.1:{gw.port}/v1/chat/completions"
                for mode in modes:  # warm caches and pools
                    wrk(url, f"sk-{KEY}", mode, 4, 1, load_cpu)
                for mode in modes:
                    profiler = profile(gw, args.profile, f"{server}-{mode}")
                    for concurrency in concurrencies:
                        run = measured(gw, url, mode, concurrency, args.seconds, cpus)
                        run.label = server
                        runs.append(run)
                        served += run.requests
                        print(row(run, directs[mode, concurrency]), flush=True)
                        if run.errors:
                            problems.append(f"{server} {mode} c={concurrency}: {run.errors} errors")
                    if profiler is not None:
                        profiler.send_signal(signal.SIGINT)
                        profiler.wait()
                gaps = slow_stream_gaps(gw.port)
                soaked, rss_curve = soak(gw, url, args.soak, cpus) if args.soak else (0, [])
                served += soaked
                upstream = quiet_upstream_count(tmp) - upstream_before + 1  # + the slow stream
                after = settled_books(before, upstream)
                peak = gw.rss_mb()[1]
            gap_text = ", ".join(f"{gap * 1000:.0f}" for gap in gaps)
            if not gaps or min(gaps) < args.slow_gap * 0.5:
                problems.append(f"{server}: the slow stream arrived bunched ({gap_text} ms)")
            books = check_books(before, after, upstream)
            problems += [f"{server}: {problem}" for problem in books]
            verdict = "balance" if not books else "DO NOT balance"
            lines.append(
                f"- {server}: {upstream} upstream requests ({served} answered to wrk), "
                f"{after.logs - before.logs} consume logs, "
                f"quota {after.log_quota - before.log_quota}"
                f": the books {verdict}. Peak RSS {peak:.0f} MB. Slow stream "
                f"(one chunk every {args.slow_gap * 1000:.0f} ms) arrived {gap_text} ms apart."
                + (f" RSS (MB) after requests: {', '.join(rss_curve)}." if rss_curve else "")
            )
            print(lines[-1], flush=True)
    load_after = uptime_load()
    table = "\n".join(
        [
            HEADER,
            *(
                row(
                    run, directs.get((run.mode, run.concurrency)) if run.label != "direct" else None
                )
                for run in runs
            ),
        ]
    )
    report = (
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.seconds:g} s per cell"
        f"{' — ' + args.note if args.note else ''}. Load average before {load_before}, "
        f"after {load_after}. Gateway pinned to CPU {gateway_cpu}, nginx + wrk to CPU {load_cpu}."
        f"\n{versions()}\n\n{table}\n\n" + "\n".join(lines)
    )
    if problems:
        report += "\n\nProblems:\n" + "\n".join(f"- {problem}" for problem in problems)
    print(report)
    if args.write:
        write_results(report)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
