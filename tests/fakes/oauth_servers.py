"""Fake identity services over real HTTP: GitHub (OAuth + API), Feishu (OAuth v2 + user
info), a wechat-server and Cloudflare Turnstile's siteverify.

Each runs a stdlib threaded HTTP server on 127.0.0.1 in a daemon thread, so the code under
test talks to it exactly as to the real service (requests / httpx over sockets).

    with FakeGitHub(client_id="id", client_secret="secret") as github:
        code = github.authorize({"login": "octo", "id": 1, "name": "Octo Cat"})
        ...  # point ONEAPI_GITHUB_URL / ONEAPI_GITHUB_API_URL at github.base_url
        assert github.requests[-1].path == "/user"
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = [
    "FakeFeishu",
    "FakeGitHub",
    "FakeTurnstile",
    "FakeWeChatServer",
    "Recorded",
    "Reply",
]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Reply:
        return cls(status, json.dumps(data).encode())

    @classmethod
    def form(cls, data: dict[str, str], status: int = 200) -> Reply:
        return cls(status, urlencode(data).encode(), "application/x-www-form-urlencoded")

    @classmethod
    def redirect(cls, location: str) -> Reply:
        return cls(302, b"", "text/plain", {"Location": location})


class FakeServer:
    """The HTTP plumbing; subclasses implement `route(request) -> Reply`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, request: Recorded) -> Reply:
        raise NotImplementedError

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                url = urlsplit(self.path)
                request = Recorded(
                    method=self.command,
                    path=url.path,
                    query=dict(parse_qsl(url.query)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                with fake._lock:
                    fake.requests.append(request)
                try:
                    reply = fake.route(request)
                except Exception as error:  # a bug in the fake must show, not hang the client
                    reply = Reply(500, repr(error).encode(), "text/plain")
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


def _bearer(headers: dict[str, str]) -> str:
    value = headers.get("authorization", "")
    for prefix in ("Bearer ", "token "):
        if value.startswith(prefix):
            return value[len(prefix) :]
    return ""


class FakeGitHub(FakeServer):
    """github.com's `/login/oauth/*` and api.github.com's `/user` on one server.

    `authorize(profile)` plays the user approving the app and returns the code GitHub would
    put on the callback URL; `/login/oauth/authorize` does the same for a browser redirect
    with `default_profile`. Codes are single-use, like GitHub's."""

    def __init__(self, client_id: str = "gh-client", client_secret: str = "gh-secret") -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.default_profile: dict[str, Any] = {"login": "octocat", "id": 583231, "name": "Octo"}
        self._codes: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, dict[str, Any]] = {}

    def authorize(self, profile: dict[str, Any]) -> str:
        code = secrets.token_hex(10)
        self._codes[code] = {"email": None, "name": None, **profile}
        return code

    def route(self, request: Recorded) -> Reply:
        if request.path == "/login/oauth/authorize":
            code = self.authorize(self.default_profile)
            query = urlencode({"code": code, "state": request.query.get("state", "")})
            return Reply.redirect(f"{request.query['redirect_uri']}?{query}")
        if request.path == "/login/oauth/access_token" and request.method == "POST":
            return self._token(request)
        if request.path == "/user":
            profile = self._tokens.get(_bearer(request.headers))
            if profile is None:
                return Reply.json({"message": "Bad credentials", "status": "401"}, 401)
            return Reply.json(profile)
        return Reply.json({"message": "Not Found"}, 404)

    def _token(self, request: Recorded) -> Reply:
        is_json = request.headers.get("content-type", "").startswith("application/json")
        params = request.json if is_json else request.form
        wants_json = "json" in request.headers.get("accept", "")

        def answer(data: dict[str, str]) -> Reply:
            # GitHub answers errors with 200 too, form-encoded unless JSON is asked for.
            return Reply.json(data) if wants_json else Reply.form(data)

        if params.get("client_id") != self.client_id or (
            params.get("client_secret") != self.client_secret
        ):
            return answer({"error": "incorrect_client_credentials"})
        profile = self._codes.pop(params.get("code", ""), None)
        if profile is None:
            return answer(
                {
                    "error": "bad_verification_code",
                    "error_description": "The code passed is incorrect or expired.",
                }
            )
        token = "gho_" + secrets.token_hex(16)
        self._tokens[token] = profile
        return answer({"access_token": token, "token_type": "bearer", "scope": "user:email"})


class FakeFeishu(FakeServer):
    """open.feishu.cn: `authen/v2/oauth/token` (JSON) and `authen/v1/user_info`."""

    def __init__(self, client_id: str = "cli_fake", client_secret: str = "lark-secret") -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self._codes: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, dict[str, Any]] = {}

    def authorize(self, user: dict[str, Any], redirect_uri: str = "") -> str:
        code = secrets.token_hex(10)
        self._codes[code] = {"redirect_uri": redirect_uri, "user": user}
        return code

    def route(self, request: Recorded) -> Reply:
        if request.path == "/open-apis/authen/v2/oauth/token" and request.method == "POST":
            return self._token(request)
        if request.path == "/open-apis/authen/v1/user_info":
            user = self._tokens.get(_bearer(request.headers))
            if user is None:
                return Reply.json({"code": 99991663, "msg": "Invalid access token"}, 401)
            return Reply.json({"code": 0, "msg": "success", "data": user})
        return Reply.json({"code": 404, "msg": "not found"}, 404)

    def _token(self, request: Recorded) -> Reply:
        params = request.json if isinstance(request.json, dict) else {}
        if params.get("grant_type") != "authorization_code":
            return Reply.json({"code": 20001, "error": "invalid_request"}, 400)
        if params.get("client_id") != self.client_id or (
            params.get("client_secret") != self.client_secret
        ):
            return Reply.json(
                {"code": 20002, "error": "invalid_client", "error_description": "bad client"},
                400,
            )
        grant = self._codes.pop(params.get("code", ""), None)
        if grant is None or (
            grant["redirect_uri"] and grant["redirect_uri"] != params.get("redirect_uri")
        ):
            return Reply.json(
                {"code": 20003, "error": "invalid_grant", "error_description": "bad code"}, 400
            )
        token = "u-" + secrets.token_hex(16)
        self._tokens[token] = {"en_name": "", "union_id": "on_x", **grant["user"]}
        return Reply.json(
            {
                "code": 0,
                "access_token": token,
                "expires_in": 7200,
                "refresh_token": "ur-" + secrets.token_hex(8),
                "refresh_token_expires_in": 604800,
                "token_type": "Bearer",
                "scope": "",
            }
        )


class FakeWeChatServer(FakeServer):
    """songquanpeng/wechat-server's `GET /api/wechat/user?code=` (Authorization: token)."""

    def __init__(self, token: str = "wechat-server-token") -> None:
        super().__init__()
        self.token = token
        self._codes: dict[str, str] = {}

    def issue(self, openid: str) -> str:
        """The code the official account would send the user."""
        code = secrets.token_hex(3)
        self._codes[code] = openid
        return code

    def route(self, request: Recorded) -> Reply:
        if request.path != "/api/wechat/user":
            return Reply.json({"success": False, "message": "not found"}, 404)
        if request.headers.get("authorization") != self.token:
            return Reply.json({"success": False, "message": "无权进行此操作，Token 无效"})
        openid = self._codes.pop(request.query.get("code", ""), "")
        return Reply.json({"success": True, "message": "", "data": openid})


class FakeTurnstile(FakeServer):
    """challenges.cloudflare.com's `POST /turnstile/v0/siteverify` (form-encoded)."""

    def __init__(self, secret: str = "turnstile-secret") -> None:
        super().__init__()
        self.secret = secret
        self.accepted: set[str] = set()

    @property
    def verify_url(self) -> str:
        return f"{self.base_url}/turnstile/v0/siteverify"

    def route(self, request: Recorded) -> Reply:
        if request.path != "/turnstile/v0/siteverify" or request.method != "POST":
            return Reply.json({"success": False}, 404)
        form = request.form
        if form.get("secret") != self.secret:
            return Reply.json({"success": False, "error-codes": ["invalid-input-secret"]})
        if form.get("response") not in self.accepted:
            return Reply.json({"success": False, "error-codes": ["invalid-input-response"]})
        return Reply.json({"success": True, "error-codes": [], "hostname": "localhost"})
