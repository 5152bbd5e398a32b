"""The `oneapi` console command: One API's flags, and one process tree for the whole gateway.

`oneapi` migrates (master nodes only), creates root on first boot, then supervises three
children: Daphne serving the ASGI app, a Celery worker and Celery beat. Ctrl-C (or SIGTERM)
stops them all; a child that dies is reported by name and exit code and takes the others
down, so a half-running gateway never hides behind a live web process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from oneapi.version import VERSION

STOP_GRACE_SECONDS = 15
ASGI_APP = "oneapi.asgi:application"
SERVERS = ("daphne", "uvicorn")


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oneapi",
        description="oneapi-py: an OpenAI-compatible LLM API gateway (One API in Python).",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "3000") or 3000),
        help="HTTP port (default: $PORT or 3000)",
    )
    parser.add_argument(
        "--log-dir", default="./logs", help="directory for log files (default: ./logs)"
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--host",
        default=os.environ.get("HOST", "0.0.0.0"),  # noqa: S104 (as One API)
        help="bind address (default 0.0.0.0)",
    )
    parser.add_argument(
        "--no-worker", action="store_true", help="serve HTTP only (run Celery elsewhere)"
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=os.environ.get("ONEAPI_SERVER", "daphne") or "daphne",
        help=(
            "the ASGI server (default: $ONEAPI_SERVER or daphne); uvicorn (uvloop + httptools) "
            "relays about twice as many requests per CPU second, see bench/RESULTS.md"
        ),
    )
    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        default=os.environ.get("PROXY_HEADERS", "").lower() in ("1", "true"),
        help=(
            "behind a reverse proxy: take the client address from X-Forwarded-For (rate limits "
            "and key subnets then see the real client; the proxy must overwrite the header)"
        ),
    )
    return parser


def web_command(server: str, host: str, port: int, proxy_headers: bool = False) -> list[str]:
    """The command serving `oneapi.asgi:application` with one process of `server`."""
    python = sys.executable
    if server == "uvicorn":
        # No lifespan (the app has no startup hooks; the router refuses the scope), no access
        # log (One API logs requests itself), and client addresses from the socket unless
        # asked, as with Daphne.
        command = [python, "-m", "uvicorn", "--host", host, "--port", str(port)]
        command += ["--loop", "uvloop", "--http", "httptools", "--lifespan", "off"]
        command += ["--no-access-log", "--timeout-graceful-shutdown", str(STOP_GRACE_SECONDS)]
        if proxy_headers:
            command += ["--proxy-headers", "--forwarded-allow-ips", "*"]
        else:
            command.append("--no-proxy-headers")
        return [*command, ASGI_APP]
    command = [python, "-m", "oneapi.daphne_plain", "-b", host, "-p", str(port)]
    if proxy_headers:
        command.append("--proxy-headers")
    return [*command, ASGI_APP]


def children(
    port: int,
    host: str,
    with_worker: bool,
    proxy_headers: bool = False,
    server: str = "daphne",
) -> list[Child]:
    python = sys.executable
    result = [Child("web", web_command(server, host, port, proxy_headers))]
    if with_worker:
        result.append(
            Child(
                "worker",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "oneapi",
                    "worker",
                    "--loglevel",
                    "INFO",
                    "--concurrency",
                    "2",
                    "--hostname",
                    f"worker-{os.getpid()}@%h",
                ],
            )
        )
        result.append(
            Child(
                "beat",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "oneapi",
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--pidfile",
                    "",
                ],
            )
        )
    return result


def prepare() -> None:
    """Migrate (master only) and bootstrap in this process, before any child starts."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    Path(settings.DATA_DIR).mkdir(parents=True, exist_ok=True)
    for folder in ("queue", "processed", "results", "control"):
        (Path(settings.CELERY_DATA_DIR) / folder).mkdir(parents=True, exist_ok=True)
    if settings.IS_MASTER_NODE:
        call_command("migrate", interactive=False, verbosity=0)
    call_command("bootstrap", verbosity=0)


def stop_all(running: list[Child]) -> None:
    for child in running:
        if child.process and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in running:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"oneapi: {child.name} did not stop in time; killing it", flush=True)
            child.process.kill()
            child.process.wait()
    for child in running:
        # Each child leads its own process group. A child that died abruptly (a SIGKILLed
        # Celery worker) leaves its pool processes behind in it: nothing may outlive us.
        if child.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)


def supervise(running: list[Child]) -> int:
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    for child in running:
        # Children ignore the terminal's Ctrl-C (own process group); we stop them in order.
        child.process = subprocess.Popen(child.command, start_new_session=True)
        print(f"oneapi: started {child.name} (pid {child.process.pid})", flush=True)
    exit_code = 0
    while not stopping:
        for child in running:
            assert child.process is not None
            code = child.process.poll()
            if code is not None:
                print(
                    f"oneapi: {child.name} (pid {child.process.pid}) exited with code {code}; "
                    "stopping the others",
                    file=sys.stderr,
                    flush=True,
                )
                exit_code = 1
                stopping = True
                break
        time.sleep(0.2)
    print("oneapi: stopping", flush=True)
    stop_all(running)
    print("oneapi: stopped", flush=True)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        print(f"oneapi-py {VERSION}")
        return 0
    if not 0 < args.port < 65536:
        print(f"oneapi: --port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneapi.settings")
    os.environ["ONEAPI_LOG_DIR"] = str(Path(args.log_dir).resolve())
    os.environ.setdefault("DATA_DIR", str((Path.cwd() / "data").resolve()))
    os.environ["PORT"] = str(args.port)
    prepare()
    return supervise(
        children(
            args.port,
            args.host,
            with_worker=not args.no_worker,
            proxy_headers=args.proxy_headers,
            server=args.server,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
