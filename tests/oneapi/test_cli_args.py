from __future__ import annotations

from oneapi.cli import build_parser, children


def test_proxy_headers_reach_daphne() -> None:
    args = build_parser().parse_args(["--proxy-headers", "--no-worker"])
    [web] = children(args.port, args.host, with_worker=False, proxy_headers=args.proxy_headers)
    assert "--proxy-headers" in web.command
    [plain] = children(3000, "0.0.0.0", with_worker=False)
    assert "--proxy-headers" not in plain.command


def test_uvicorn_serves_the_same_app_without_access_log_or_lifespan() -> None:
    args = build_parser().parse_args(["--server", "uvicorn", "--no-worker", "--port", "4000"])
    [web] = children(args.port, args.host, with_worker=False, server=args.server)
    assert web.command[1:3] == ["-m", "uvicorn"]
    assert web.command[-1] == "oneapi.asgi:application"
    for flag in ("--no-access-log", "--no-proxy-headers"):
        assert flag in web.command
    assert web.command[web.command.index("--lifespan") + 1] == "off"
    assert web.command[web.command.index("--port") + 1] == "4000"


def test_uvicorn_takes_proxy_headers_from_any_proxy_when_asked() -> None:
    [web] = children(3000, "0.0.0.0", with_worker=False, proxy_headers=True, server="uvicorn")
    assert "--proxy-headers" in web.command
    assert web.command[web.command.index("--forwarded-allow-ips") + 1] == "*"


def test_daphne_stays_the_default_server() -> None:
    args = build_parser().parse_args([])
    assert args.server == "daphne"
