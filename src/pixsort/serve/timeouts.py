"""Bounds on slow clients.

* :class:`BodyReadTimeout` (ASGI middleware): the whole request body must arrive within
  ``timeout_s`` of the request's start, or the request is answered 408 and the
  connection closed.
* :class:`HeaderTimeoutH11Protocol` (uvicorn's h11 protocol, passed as ``http=``): a
  connection that has not finished a request's headers within ``header_timeout_s`` of
  connecting (or of its previous response) is closed.  uvicorn's own keep-alive
  timeout only covers a connection that sends nothing between requests; one header
  byte every few seconds would otherwise hold a connection open forever.
"""

from __future__ import annotations

import asyncio
import functools

from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from pixsort.serve.guards import call_guarded, send_json_and_close

# h11's limit on a request's headers (bytes buffered before they are complete)
MAX_HEADER_BYTES = 64 * 1024


class RequestTimedOut(HTTPException):
    """Raised from inside ``receive`` when the body has not arrived in time (an
    HTTPException, so FastAPI's body parsing lets it through)."""

    def __init__(self, timeout_s: float):
        super().__init__(408, f"the request body did not arrive within {timeout_s:g} s")
        self.timeout_s = timeout_s


def timeout_body(timeout_s: float) -> dict:
    return {"error": "request_timeout", "message": f"the request body did not arrive within {timeout_s:g} s"}


async def _send_408(send, timeout_s: float) -> None:
    await send_json_and_close(send, 408, timeout_body(timeout_s))


class BodyReadTimeout:
    """ASGI middleware: every ``receive()`` of a request's body must complete before
    ``timeout_s`` after the request started; otherwise 408 (JSON, connection closed)."""

    def __init__(self, app, timeout_s: float):
        self.app = app
        self.timeout_s = float(timeout_s)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        body_done = timed_out = False

        async def bounded_receive():
            nonlocal body_done, timed_out
            if body_done:  # after the body only a disconnect can come: no deadline
                return await receive()
            remaining = deadline - loop.time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.001))
            except TimeoutError:
                timed_out = True
                raise RequestTimedOut(self.timeout_s) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await call_guarded(self.app, scope, bounded_receive, send, tripped=lambda: timed_out,
                           answer=functools.partial(_send_408, timeout_s=self.timeout_s),
                           error=RequestTimedOut)  # fmt: skip


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers do not
    complete within ``header_timeout_s``.  Pass ``protocol_class(header_timeout_s)``
    as uvicorn's ``http=``."""

    header_timeout_s: float = 10.0

    def __init__(self, *args, header_timeout_s: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if header_timeout_s is not None:
            self.header_timeout_s = float(header_timeout_s)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        cycle = self.cycle  # a new request replaces it: the headers were complete
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout, cycle)

    def _header_timeout(self, cycle) -> None:
        self._header_timer = None
        if self.cycle is cycle and not self.transport.is_closing():
            self.transport.close()


def protocol_class(header_timeout_s: float):
    """The ``http=`` value for uvicorn (picklable, so worker processes get it too)."""
    return functools.partial(HeaderTimeoutH11Protocol, header_timeout_s=header_timeout_s)


def uvicorn_options(settings) -> dict:
    """The uvicorn Config options that bound slow clients for ``settings``."""
    return {
        "http": protocol_class(settings.request_timeout_s),
        "timeout_keep_alive": settings.keep_alive_s,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }


__all__ = [
    "MAX_HEADER_BYTES",
    "BodyReadTimeout",
    "HeaderTimeoutH11Protocol",
    "RequestTimedOut",
    "protocol_class",
    "timeout_body",
    "uvicorn_options",
]
