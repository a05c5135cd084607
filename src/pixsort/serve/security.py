"""The API-key dependency: ``Depends(require_key)`` on a route makes it answer 401
unless the request's ``X-API-Key`` header holds the key the app was started with
(``request.app.state.settings.api_key``; no key set, every request passes).

A browser opening ``/map`` (or a thumbnail link on it) cannot send a header, so a GET
also passes with the key cookie that ``POST /key`` sets after checking the key typed into
:func:`key_form_page`: HttpOnly, ``SameSite=Strict`` (never sent by another site's page)
and holding a digest of the key, not the key.  Requests that change or compute something
(``POST /predict``) still need the header.

:class:`HostAllowList` answers 400 to a request whose ``Host`` header names a host the
server was not told it is (DNS rebinding: a page on ``attacker.example`` resolved to
127.0.0.1 would otherwise reach a key-less local server)."""

from __future__ import annotations

import hashlib
import html
import json
import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException

API_KEY_HEADER = "X-API-Key"
KEY_COOKIE = "pixsort_key"

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


def key_token(key: str) -> str:
    """What the key cookie holds for ``key``: a digest, so the cookie jar never holds the key."""
    return hashlib.sha256(b"pixsort key cookie\0" + key.encode()).hexdigest()


def key_matches(given: str | None, expected: str) -> bool:
    """``given == expected``, in constant time."""
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def require_key(request: Request, given: Annotated[str | None, Depends(key_header)]) -> None:
    """Refuse the request (401) unless it carries the server's key (or, for a GET, the key
    cookie); compared in constant time."""
    expected = request.app.state.settings.api_key
    if expected is None or key_matches(given, expected):
        return
    if request.method in ("GET", "HEAD") and key_matches(request.cookies.get(KEY_COOKIE), key_token(expected)):
        return
    raise HTTPException(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")


def safe_next(path: object, default: str = "/map") -> str:
    """Where ``POST /key`` may send the browser: a path on this server, else ``default``."""
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return default
    return path if path.isprintable() and len(path) <= 512 else default


KEY_FORM_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def key_form_page(next_path: str, wrong: bool = False) -> str:
    """The page a browser gets instead of a JSON 401: a form that posts the key to ``/key``."""
    note = "<p class=bad>That key is wrong.</p>" if wrong else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>pixsort: API key</title>"
        "<style>body{font:16px system-ui,sans-serif;margin:3em auto;max-width:28em}"
        "input{font:inherit;padding:.3em}.bad{color:#b00}</style></head><body>"
        "<h1>This server needs its API key</h1>"
        f"<p>Enter the key the server was started with to open <code>{html.escape(next_path)}</code>.</p>{note}"
        '<form method=post action="/key"><input type=password name=key autocomplete=current-password '
        f'required autofocus> <input type=hidden name=next value="{html.escape(next_path, quote=True)}">'
        "<button type=submit>Open</button></form></body></html>"
    )


__all__ = [
    "API_KEY_HEADER",
    "KEY_COOKIE",
    "KEY_FORM_HEADERS",
    "LOOPBACK_HOSTS",
    "HostAllowList",
    "key_form_page",
    "key_header",
    "key_matches",
    "key_token",
    "normal_host",
    "require_key",
    "safe_next",
]
