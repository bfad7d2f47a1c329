"""Token access for a service bound beyond loopback (``serve --host 0.0.0.0``).

Every request but ``/health`` and the page's static shell (``/`` and ``/static/...``: no model data,
the page asks for the token and sends it with its API calls) must carry the token: HTTP as
``Authorization: Bearer TOKEN`` or ``X-Token: TOKEN``; the WebSocket as ``?token=TOKEN`` or in its
first message (checked by the WebSocket endpoint itself, see stream.py). Compared in constant time."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

OPEN_PATHS = ("/health", "/", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_ok(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _header_token(scope: dict) -> str | None:
    for k, v in scope.get("headers", []):
        if k == b"authorization" and v[:7].lower() == b"bearer ":
            return v[7:].decode("latin-1").strip()
        if k == b"x-token":
            return v.decode("latin-1").strip()
    return None


class TokenMiddleware:
    """Pure ASGI: 401 JSON for HTTP requests without the token (WebSockets pass: their endpoint
    accepts the token in the query or the first message)."""

    def __init__(self, app: Any, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        if token_ok(_header_token(scope), self.token):
            return await self.app(scope, receive, send)
        from fastapi.responses import JSONResponse

        resp = JSONResponse(status_code=401, headers={"WWW-Authenticate": "Bearer"},
                            content={"error": "unauthorized", "detail": "this service needs its token: send "
                                     "'Authorization: Bearer TOKEN' (serve --token, or PARROT_SER_TOKEN)"})
        await resp(scope, receive, send)
