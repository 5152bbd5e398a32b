from __future__ import annotations

from oneapi.cli import build_parser, children


def test_proxy_headers_reach_daphne() -> None:
    args = build_parser().parse_args(["--proxy-headers", "--no-worker"])
    [web] = children(args.port, args.host, with_worker=False, proxy_headers=args.proxy_headers)
    assert "--proxy-headers" in web.command
    [plain] = children(3000, "0.0.0.0", with_worker=False)
    assert "--proxy-headers" not in plain.command
