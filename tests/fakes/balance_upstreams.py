"""A fake of every balance endpoint One API polls, each answering in its provider's format.

One real HTTP server (stdlib `http.server` in a daemon thread) serves them all, so the code
under test goes through sockets, status codes and JSON exactly as against the providers:

    with FakeBalanceProviders(api_key="sk-balance") as fake:
        fake.deepseek_cny = "110.50"
        ...  # a DeepSeek channel with base_url=fake.base_url
        assert fake.last_request.path == "/user/balance"

Every public attribute may be changed from the test at any time.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

__all__ = ["FakeBalanceProviders", "RecordedRequest"]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names


class FakeBalanceProviders:
    def __init__(self, api_key: str = "sk-balance", host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        self.host = host
        # When set, every request is answered with this status and an error body.
        self.status_override: int | None = None

        # OpenAI-style `credit_grants` (CloseAI, API2GPT, AIGC2D).
        self.total_granted = 18.0
        self.total_used = 5.5
        # OpenAI-SB: the credit comes as a string.
        self.sb_credit = "12.34"
        # AIProxy.
        self.aiproxy_points = 42.5
        # SiliconFlow: `code` other than 20000 is a failure.
        self.siliconflow_code = 20000
        self.siliconflow_total = "7.89"
        # DeepSeek: one entry per currency, amounts as strings.
        self.deepseek_cny: str | None = "110.50"
        self.deepseek_usd = "15.00"
        # OpenRouter.
        self.openrouter_credits = 25.0
        self.openrouter_usage = 7.25

        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeBalanceProviders is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise LookupError("no request received")
            return self._requests[-1]

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        # A short poll keeps stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-balance",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ requests

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        recorded = RecordedRequest(
            method=handler.command,
            path=url.path,
            query=dict(parse_qsl(url.query)),
            headers={name.lower(): value for name, value in handler.headers.items()},
        )
        with self._lock:
            self._requests.append(recorded)
        status, body = self._answer(recorded)
        payload = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _bearer_ok(self, request: RecordedRequest) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _answer(self, request: RecordedRequest) -> tuple[int, Any]:
        if self.status_override is not None:
            return self.status_override, {"error": {"message": "overridden", "type": "fake"}}
        route = {
            "/dashboard/billing/credit_grants": self._credit_grants,
            "/sb-api/user/status": self._openai_sb,
            "/api/report/getUserOverview": self._aiproxy,
            "/v1/user/info": self._siliconflow,
            "/user/balance": self._deepseek,
            "/v1/credits": self._openrouter,
        }.get(request.path)
        if route is None:
            return 404, {"error": {"message": f"no route {request.path}", "type": "not_found"}}
        return route(request)

    def _unauthorized(self) -> tuple[int, Any]:
        return 401, {
            "error": {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        }

    def _credit_grants(self, request: RecordedRequest) -> tuple[int, Any]:
        if not self._bearer_ok(request):
            return self._unauthorized()
        remaining = self.total_granted - self.total_used
        return 200, {
            "object": "credit_summary",
            "total_granted": self.total_granted,
            "total_used": self.total_used,
            "total_available": remaining,  # OpenAI's, CloseAI's and AIGC2D's name
            "total_remaining": remaining,  # API2GPT's name
            "grants": {"object": "list", "data": []},
        }

    def _openai_sb(self, request: RecordedRequest) -> tuple[int, Any]:
        # OpenAI-SB takes the key in the query and answers 200 with `data: null` when wrong.
        if request.query.get("api_key") != self.api_key:
            return 200, {"msg": "api_key 不存在", "data": None}
        return 200, {"msg": "ok", "data": {"credit": self.sb_credit}}

    def _aiproxy(self, request: RecordedRequest) -> tuple[int, Any]:
        if request.headers.get("api-key") != self.api_key:
            return 200, {"success": False, "message": "无效的 Api-Key", "error_code": 401}
        return 200, {
            "success": True,
            "message": "",
            "error_code": 0,
            "data": {"totalPoints": self.aiproxy_points},
        }

    def _siliconflow(self, request: RecordedRequest) -> tuple[int, Any]:
        if not self._bearer_ok(request):
            return 401, "Invalid token"
        if self.siliconflow_code != 20000:
            return 200, {"code": self.siliconflow_code, "message": "账户异常", "status": False}
        return 200, {
            "code": 20000,
            "message": "OK",
            "status": True,
            "data": {
                "id": "userid",
                "name": "tester",
                "image": "",
                "email": "tester@example.com",
                "isAdmin": False,
                "balance": "0.88",
                "status": "normal",
                "introduction": "",
                "role": "",
                "chargeBalance": "88.00",
                "totalBalance": self.siliconflow_total,
            },
        }

    def _deepseek(self, request: RecordedRequest) -> tuple[int, Any]:
        if not self._bearer_ok(request):
            return self._unauthorized()
        infos = [
            {
                "currency": "USD",
                "total_balance": self.deepseek_usd,
                "granted_balance": "0.00",
                "topped_up_balance": self.deepseek_usd,
            }
        ]
        if self.deepseek_cny is not None:
            infos.append(
                {
                    "currency": "CNY",
                    "total_balance": self.deepseek_cny,
                    "granted_balance": "10.00",
                    "topped_up_balance": "100.50",
                }
            )
        return 200, {"is_available": True, "balance_infos": infos}

    def _openrouter(self, request: RecordedRequest) -> tuple[int, Any]:
        if not self._bearer_ok(request):
            return 401, {"error": {"message": "No auth credentials found", "code": 401}}
        return 200, {
            "data": {
                "total_credits": self.openrouter_credits,
                "total_usage": self.openrouter_usage,
            }
        }
