"""The API-key dependency: ``Depends(require_key)`` on a route makes it answer 401
unless the request's ``X-API-Key`` header holds the key the app was started with
(``request.app.state.settings.api_key``; no key set, every request passes).

:class:`HostAllowList` answers 400 to a request whose ``Host`` header names a host the
server was not told it is (DNS rebinding: a page on ``attacker.example`` resolved to
127.0.0.1 would otherwise reach a key-less local server)."""

from __future__ import annotations

import json
import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException

API_KEY_HEADER = "X-API-Key"

key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Needed when the server has a key.")


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def normal_host(host: str) -> str:
    """``host`` as the allow-list compares it: lower case, no port, IPv6 without brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        return host.split(":", 1)[0]
    return host


def host_of_request(scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return normal_host(value.decode("latin-1"))
    return ""


class HostAllowList:
    """ASGI middleware: answer 400 (JSON) unless the ``Host`` header is one of
    ``allowed_hosts`` (compared by :func:`normal_host`; ``"*"`` allows any)."""

    def __init__(self, app, allowed_hosts):
        self.app = app
        self.allowed = {normal_host(h) for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        host = host_of_request(scope)
        if host in self.allowed:
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "error": "invalid_host",
                "message": f"this server does not answer for host {host!r} (start it with --allowed-host to add one)",
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def require_key(request: Request, given: Annotated[str | None, Depends(key_header)]) -> None:
    """Refuse the request (401) unless it carries the server's key; compared in constant time."""
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    if given is None or not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")


__all__ = ["API_KEY_HEADER", "LOOPBACK_HOSTS", "HostAllowList", "key_header", "normal_host", "require_key"]
