"""API keys on the MCP streamable-HTTP endpoint: the same keys, headers and answers as the JSON API.

Over stdio the user who starts the server is the client; over HTTP anyone who reaches the port could
add and remove crates, so every request needs a key (``Authorization: Bearer <key>`` or
``X-API-Key: <key>``). A refused request gets the JSON API's error shape: 401 without a valid key
(with ``WWW-Authenticate``), 403 for a revoked one, 503 while the database is unreachable. The check
is plain ASGI around the SDK's app, so it covers every method of the endpoint (POST, the GET event
stream, DELETE of a session).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread
from django.db import DatabaseError, close_old_connections

from crates.apikeys import find_api_key, verify_api_key
from crates.errors import DatabaseUnavailable, database_unavailable
from crates.fronts import AUTH_HINT

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def presented_key(headers: dict[str, str]) -> str:
    """The key a request presents; Refused(401) when there is none or it uses another scheme."""
    authorization = headers.get("authorization", "").strip()
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise Refused(401, "unauthorized",
                          f"The Authorization header uses the scheme {scheme[:30]!r}, not Bearer. " + AUTH_HINT)
        if token.strip():
            return token.strip()
    key = headers.get("x-api-key", "").strip()
    if not key:
        raise Refused(401, "unauthorized", "This MCP endpoint needs an API key. " + AUTH_HINT)
    return key


def check_key(raw: str) -> str:
    """The name of the active key ``raw``; Refused(401) for an unknown key, Refused(403) for a revoked one."""
    close_old_connections()  # a long-running server: never reuse a connection the database dropped
    try:
        key = verify_api_key(raw=raw)
        if key is not None:
            return key.name
        if find_api_key(raw=raw) is not None:
            raise Refused(403, "forbidden", "This API key has been revoked; ask an administrator for a new one.")
        raise Refused(401, "unauthorized", "The API key is not valid. " + AUTH_HINT)
    except DatabaseError as exc:
        if (unavailable := database_unavailable(exc)) is None:
            raise
        raise Refused(503, unavailable.code, unavailable.message) from exc
    finally:
        close_old_connections()


class ApiKeyGate:
    """ASGI middleware: HTTP requests pass to ``app`` only with a valid API key."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: the SDK's session manager starts and stops there
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            name = await anyio.to_thread.run_sync(check_key, presented_key(headers))
        except Refused as refused:
            logger.info("MCP HTTP %s %s refused (%s): %s", scope["method"], scope["path"], refused.status,
                        refused.message)
            await _send_error(send, refused)
            return
        scope.setdefault("state", {})["api_key_name"] = name
        await self.app(scope, receive, send)


async def _send_error(send: Send, refused: Refused) -> None:
    body = json.dumps({"error": {"code": refused.code, "message": refused.message, "details": {}}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if refused.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="ferrodex"'))
    if refused.status == 503:
        headers.append((b"retry-after", str(DatabaseUnavailable.retry_after_seconds).encode()))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
