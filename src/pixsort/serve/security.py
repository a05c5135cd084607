"""The API-key dependency: ``Depends(require_key)`` on a route makes it answer 401
unless the request's ``X-API-Key`` header holds the key the app was started with
(``request.app.state.settings.api_key``; no key set, every request passes)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException

API_KEY_HEADER = "X-API-Key"

key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Needed when the server has a key.")


def require_key(request: Request, given: Annotated[str | None, Depends(key_header)]) -> None:
    """Refuse the request (401) unless it carries the server's key; compared in constant time."""
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    if given is None or not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")


__all__ = ["API_KEY_HEADER", "key_header", "require_key"]
