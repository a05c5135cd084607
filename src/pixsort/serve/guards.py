"""What the body-size and body-timeout middlewares share: a JSON answer that closes the
connection, and running the app so that, once a guard on ``receive`` has tripped,
whatever the app would answer is replaced by the guard's own answer."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable


async def send_json_and_close(send, status: int, body: dict) -> None:
    """A complete JSON response that tells the client the connection closes (the rest
    of its request will not be read)."""
    data = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def call_guarded(app, scope, receive, send, *, tripped: Callable[[], bool],
                       answer: Callable[[object], Awaitable[None]], error: type[Exception]) -> None:  # fmt: skip
    """Run ``app`` with the guarded ``receive``; once ``tripped()`` the response the app
    starts (its own error, or a parser's 400 that swallowed ``error``) is replaced by
    ``answer(send)``, and ``error`` escaping the app is answered the same way."""
    response_started = replaced = False

    async def guarded_send(message):
        nonlocal response_started, replaced
        if replaced:
            return
        if message["type"] == "http.response.start":
            response_started = True
            if tripped():
                replaced = True
                await answer(send)
                return
        await send(message)

    try:
        await app(scope, receive, guarded_send)
    except error:
        if not response_started:
            await answer(send)


__all__ = ["call_guarded", "send_json_and_close"]
