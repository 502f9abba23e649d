"""Injected network, proxy and results-stream faults for the stand-in server.

Owns the fault settings and the per-request decision (drop, proxy error, …), the HTML
bodies a reverse proxy or SSO gateway would send, and the faults of JATOS's streamed result
archives (a zip that ends early while the answer is still 200; silence that JATOS's
30-second keep-alive fills with a space byte, docs/jatos-api.md §14.3). It knows nothing about
JATOS routes and does no I/O.
"""

from __future__ import annotations

import html
import random
import threading
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal

# nginx's own reason phrases where they differ from the RFC ones.
_NGINX_REASONS = {
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
    413: "Request Entity Too Large",
}


def reason_phrase(status: int) -> str:
    if status in _NGINX_REASONS:
        return _NGINX_REASONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def proxy_error_page(status: int) -> bytes:
    """The HTML page nginx sends for `status` (e.g. 502/503, or 413 from `client_max_body_size`)."""
    title = html.escape(f"{status} {reason_phrase(status)}")
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode("ascii")


SIGN_IN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in - University SSO</title></head>\n"
    b'<body><form method="post" action="/login"><input name="username">'
    b'<input name="password" type="password"><button>Sign in</button></form></body></html>\n'
)


@dataclass(frozen=True)
class Truncation:
    """End the next results zip after `after_entries` entries: `valid` closes the archive
    (what a database error inside JATOS's stream produces), otherwise the bytes just stop."""

    after_entries: int
    valid: bool


@dataclass(frozen=True)
class FaultAction:
    """What to do with one request instead of (or before) answering it normally."""

    kind: Literal["drop", "error", "lose"]
    status: int = 0


class Faults:
    """Mutable, thread-safe fault settings. Defaults inject nothing.

    * `latency_s`: delay before every request is handled;
    * `error_rate` / `error_status`: answer that share of requests with a proxy-style HTML
      error page (default 503);
    * `drop_rate`: close that share of connections without any response;
    * `fail_next(n, status)` / `drop_next(n)`: the same for the next n requests, deterministic;
    * `lose_answer_next(n)`: handle the next n requests that change something (POST, PUT,
      PATCH, DELETE), then close the connection instead of answering (a network cut after
      the server did the work: an upload stored, its answer lost);
    * `proxy_max_body_bytes`: bodies above this get nginx's HTML 413 and the connection is
      closed without the body being processed;
    * `login_redirect`: every request gets a 302 to `/login` (an SSO gateway in front).
    * `truncate_results_next(n, after_entries, valid)`: the next `n` results zips end
      early but still answer 200 (the stream just ends);
    * `results_stall_s`: a pause before every entry of a results zip; pauses longer than the
      server's keep-alive interval get a space byte injected, as JATOS's does;
    * `seed`: makes the random choices reproducible.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency_s: float = 0.0
        self.error_rate: float = 0.0
        self.error_status: int = 503
        self.drop_rate: float = 0.0
        self.proxy_max_body_bytes: int | None = None
        self.login_redirect: bool = False
        self._seed: int | None = None
        self._rng = random.Random()
        self._fail_next: list[int] = []
        self._drop_next = 0
        self._lose_next = 0
        self.results_stall_s: float = 0.0
        self._truncations: list[Truncation] = []

    @property
    def seed(self) -> int | None:
        return self._seed

    @seed.setter
    def seed(self, value: int | None) -> None:
        with self._lock:
            self._seed = value
            self._rng = random.Random(value)

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next `n` requests with `status` and a proxy HTML page."""
        with self._lock:
            self._fail_next.extend([status] * n)

    def drop_next(self, n: int) -> None:
        """Close the connection of the next `n` requests without any response."""
        with self._lock:
            self._drop_next += n

    def lose_answer_next(self, n: int) -> None:
        """Handle the next `n` requests that change something, then close the connection
        without the answer."""
        with self._lock:
            self._lose_next += n

    def truncate_results_next(
        self, n: int = 1, *, after_entries: int = 0, valid: bool = False
    ) -> None:
        """End the next `n` results zips after `after_entries` entries (still 200)."""
        with self._lock:
            self._truncations.extend([Truncation(after_entries, valid)] * n)

    def take_truncation(self) -> Truncation | None:
        """Consume one scheduled truncation, if any (called once per results zip)."""
        with self._lock:
            return self._truncations.pop(0) if self._truncations else None

    def reset(self) -> None:
        """Back to no faults at all (the seed is kept)."""
        with self._lock:
            self.results_stall_s = 0.0
            self._truncations.clear()
            self.latency_s = 0.0
            self.error_rate = 0.0
            self.error_status = 503
            self.drop_rate = 0.0
            self.proxy_max_body_bytes = None
            self.login_redirect = False
            self._fail_next.clear()
            self._drop_next = 0
            self._lose_next = 0

    def decide(self, method: str = "GET") -> FaultAction | None:
        """Consume one request's worth of scheduled faults; None means "handle normally"."""
        with self._lock:
            if self._drop_next > 0:
                self._drop_next -= 1
                return FaultAction("drop")
            if self._lose_next > 0 and method in ("POST", "PUT", "PATCH", "DELETE"):
                self._lose_next -= 1
                return FaultAction("lose")
            if self._fail_next:
                return FaultAction("error", self._fail_next.pop(0))
            if self.drop_rate > 0 and self._rng.random() < self.drop_rate:
                return FaultAction("drop")
            if self.error_rate > 0 and self._rng.random() < self.error_rate:
                return FaultAction("error", self.error_status)
            return None

    def __repr__(self) -> str:
        return (
            f"Faults(latency_s={self.latency_s}, error_rate={self.error_rate}, "
            f"error_status={self.error_status}, drop_rate={self.drop_rate}, "
            f"proxy_max_body_bytes={self.proxy_max_body_bytes}, "
            f"login_redirect={self.login_redirect}, pending_fail={len(self._fail_next)}, "
            f"pending_drop={self._drop_next}, pending_lose={self._lose_next}, "
            f"results_stall_s={self.results_stall_s}, "
            f"pending_truncations={len(self._truncations)})"
        )
