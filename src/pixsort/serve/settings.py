"""What a serving app is told, once: :class:`ServeSettings`, a frozen dataclass checked
when it is made.

Settings travel as arguments (``create_app(model, settings)``, or inside the
picklable factory that each worker process calls), never through environment
variables.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

from pixsort.serve.security import LOOPBACK_HOSTS, normal_host
from pixsort.serve.uploads import MB

RUNTIMES = ("torch", "onnx")


@dataclass(frozen=True)
class ServeSettings:
    """How a served model answers.

    Parameters
    ----------
    max_upload_mb : float
        Largest request body accepted, all images of a request together; larger ones
        are answered 413 while they stream in.
    api_key : str or None
        When set, ``/predict``, ``/model`` and ``/thumbnails`` need it in the
        ``X-API-Key`` header; ``/``, ``/health`` and the docs stay open.  Left out of
        the repr, so it never lands in a log.
    max_images : int
        Most images in one request.
    n_neighbors : int
        Nearest training images returned per upload by a clusterer (0: none).
    max_batch : int
        Most images stacked into one model call across concurrent requests.
    threads : int, optional
        torch (or ONNX Runtime) threads for inference (default: every available
        core).  Fewer leaves cores to HTTP parsing and decoding, and is a must with
        several workers.
    runtime : "torch" | "onnx"
        What runs a classifier: torch, or ONNX Runtime on the model folder's
        ``model.onnx`` (exported and parity-checked at start-up when missing or stale).
        Clusterers are served by torch only.
    allowed_hosts : tuple of str
        Host names (``Host`` header, port ignored) the server answers for; others get
        400, so a DNS-rebinding page cannot reach a local server.  Default: the loopback
        names; ``"*"`` allows any.
    request_timeout_s : float
        Longest a client may take to send a request's headers, and again its whole
        body (408 for a body too slow; a connection stuck in its headers is closed).
    keep_alive_s : float
        How long an idle keep-alive connection is held open between requests.
    max_pixels : int
        Largest image accepted, in pixels (width x height, from the header); the lower
        of this and the model's own limit applies.
    max_decoded_mb : float
        Most memory the images of one request may take once decoded, judged from their
        headers before any is decoded (413 ``decode_budget_exceeded`` above it).
    """

    max_upload_mb: float = 20
    api_key: str | None = field(default=None, repr=False)
    max_images: int = 64
    n_neighbors: int = 5
    max_batch: int = 32
    threads: int | None = None
    runtime: str = "torch"
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    request_timeout_s: float = 30.0
    keep_alive_s: float = 5.0
    max_pixels: int = 40_000_000
    max_decoded_mb: float = 160.0

    def __post_init__(self) -> None:
        if not self.max_upload_mb > 0:
            raise ValueError(f"max_upload_mb must be > 0, got {self.max_upload_mb}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be empty (pass None for no key)")
        for name, least in (("max_images", 1), ("n_neighbors", 0), ("max_batch", 1), ("max_pixels", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, numbers.Integral) or self.threads < 1
        ):
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")
        if isinstance(self.allowed_hosts, str) or not all(
            isinstance(h, str) and normal_host(h) for h in self.allowed_hosts
        ):
            raise ValueError(f"allowed_hosts must be a tuple of host names, got {self.allowed_hosts!r}")
        if not self.allowed_hosts:
            raise ValueError("allowed_hosts must name at least one host")
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        if (
            isinstance(self.max_pixels, bool)
            or not isinstance(self.max_pixels, numbers.Integral)
            or self.max_pixels < 1
        ):
            raise ValueError(f"max_pixels must be an integer >= 1, got {self.max_pixels!r}")
        for name in ("request_timeout_s", "keep_alive_s", "max_decoded_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")

    @property
    def max_upload_bytes(self) -> int:
        """The body limit in bytes."""
        return int(self.max_upload_mb * MB)

    @property
    def max_decoded_bytes(self) -> int:
        """The per-request decoded-memory budget in bytes."""
        return int(self.max_decoded_mb * MB)

    @property
    def auth_required(self) -> bool:
        return self.api_key is not None

    def replace(self, **changes) -> ServeSettings:
        """A copy with ``changes`` applied (and checked); unknown names are a TypeError."""
        return dataclasses.replace(self, **changes) if changes else self


__all__ = ["RUNTIMES", "ServeSettings"]
