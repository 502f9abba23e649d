"""HTTP wire details of the stand-in server that JATOS inherits from Java and Play.

Owns: `java.net.URLDecoder` semantics (docs/jatos-api.md §9.2), Java's `String.trim`, the
streaming request-body reader (Content-Length or chunked, with size limits), the download
`Content-Disposition` encoding, cookie parsing, Jackson's NON_NULL writing, and the
`Request`/`Response` values passed between the transport and the JATOS application. Knows
nothing about JATOS routes or state.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

_HEX_PAIR = re.compile(r"[+-]?[0-9A-Fa-f]+")


class MalformedEscapeError(ValueError):
    """`URLDecoder` threw `IllegalArgumentException` (→ 500 in JATOS, docs/jatos-api.md §9.2)."""


def java_url_decode(text: str) -> str:
    """`java.net.URLDecoder.decode(text, UTF_8)`, quirks included.

    `+` becomes a space; runs of `%XX` are collected as bytes and decoded as UTF-8 (invalid
    sequences become U+FFFD); an incomplete or non-hex escape raises. Like Java's
    `Integer.parseInt(…, 16)`, a sign is accepted (`%+1` is byte 0x01); negative values raise.
    """
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "+":
            out.append(" ")
            i += 1
        elif c == "%":
            buf = bytearray()
            while i + 2 < n and text[i] == "%":
                pair = text[i + 1 : i + 3]
                if not _HEX_PAIR.fullmatch(pair):
                    raise MalformedEscapeError(
                        f"Illegal hex characters in escape pattern: {pair!r}"
                    )
                value = int(pair, 16)
                if value < 0:
                    raise MalformedEscapeError("Illegal hex characters in escape (%) pattern")
                buf.append(value)
                i += 3
            if i < n and text[i] == "%":
                raise MalformedEscapeError("Incomplete trailing escape (%) pattern")
            out.append(buf.decode("utf-8", errors="replace"))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def decode_path_segment(segment: str) -> str:
    """Play's decoding of a single-segment route part such as `:id` (%XX only; `+` stays)."""
    return urllib.parse.unquote(segment, errors="replace")


def java_trim(text: str) -> str:
    """Java `String.trim()`: strips every char <= U+0020 (not Unicode whitespace)."""
    start, end = 0, len(text)
    while start < end and text[start] <= " ":
        start += 1
    while end > start and text[end - 1] <= " ":
        end -= 1
    return text[start:end]


def parse_java_long(text: str) -> int | None:
    """`Long.parseLong(text)` or None if Java would throw."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    value = int(text)
    if not -(2**63) <= value < 2**63:
        return None
    return value


def cookie_value(cookie_header: str | None, name: str) -> str | None:
    """Value of cookie `name` in a `Cookie` header, or None."""
    if not cookie_header:
        return None
    for part in cookie_header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"')
    return None


# Play `HttpHeaderParameterEncoding`: printable ASCII except `"` and `\` go in the quoted
# parameter; anything else becomes `?` there and forces an RFC 5987 `filename*`.
_ATTR_CHARS = frozenset(
    b"!#$&+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


def content_disposition(disposition: str, filename: str) -> str:
    """`inline; filename="x"` / `attachment; filename="x"` as Play renders it
    (docs/jatos-api.md §4)."""
    quoted: list[str] = []
    extended = False
    for ch in filename:
        if 0x20 <= ord(ch) <= 0x7E and ch not in '"\\':
            quoted.append(ch)
        else:
            quoted.append("?")
            extended = True
    header = f'{disposition}; filename="{"".join(quoted)}"'
    if extended:
        encoded = "".join(
            chr(b) if b in _ATTR_CHARS else f"%{b:02x}"
            for b in filename.encode("utf-8", errors="surrogatepass")
        )
        header += f"; filename*=utf-8''{encoded}"
    return header


class BodyTooLargeError(Exception):
    """The request body is over a limit; `by_proxy` tells which (proxy or JATOS itself)."""

    def __init__(self, *, by_proxy: bool) -> None:
        super().__init__("request body too large")
        self.by_proxy = by_proxy


class BadBodyError(Exception):
    """The body framing is broken (bad chunk size); the connection must be closed."""


class IncompleteBodyError(ConnectionError):
    """The client went away before sending the whole body."""


class RequestBody:
    """Streams a request body from the socket, never holding more than one chunk.

    Handles `Content-Length` and `Transfer-Encoding: chunked`. `max_bytes` (JATOS's limit)
    and `proxy_max_bytes` (a reverse proxy's) are enforced while reading, for bodies whose
    length is not declared up front; declared lengths are checked by the caller before any
    byte is read.
    """

    def __init__(
        self,
        rfile: BinaryIO,
        *,
        length: int | None,
        chunked: bool,
        max_bytes: int | None = None,
        proxy_max_bytes: int | None = None,
    ) -> None:
        self._rfile = rfile
        self._remaining = 0 if length is None else length
        self._chunked = chunked
        self._chunk_left = 0
        self._done = not chunked and self._remaining == 0
        self.max_bytes = max_bytes
        self.proxy_max_bytes = proxy_max_bytes
        self.bytes_read = 0
        self.declared_length = length

    @property
    def done(self) -> bool:
        return self._done

    def read(self, size: int = 65536) -> bytes:
        """Up to `size` bytes; b"" at the end of the body."""
        data = self._read_chunked(size) if self._chunked else self._read_plain(size)
        self.bytes_read += len(data)
        if self.proxy_max_bytes is not None and self.bytes_read > self.proxy_max_bytes:
            raise BodyTooLargeError(by_proxy=True)
        if self.max_bytes is not None and self.bytes_read > self.max_bytes:
            raise BodyTooLargeError(by_proxy=False)
        return data

    def drain(self) -> None:
        """Read and discard the rest of the body.

        JATOS's own limit no longer applies (the answer is decided), but a proxy's does: it
        sits in front and counts every byte, so draining may still raise BodyTooLargeError.
        """
        self.max_bytes = None
        while self.read(65536):
            pass

    def _read_plain(self, size: int) -> bytes:
        if self._done:
            return b""
        data = self._rfile.read(min(size, self._remaining))
        if not data:
            raise IncompleteBodyError("client closed the connection mid-body")
        self._remaining -= len(data)
        if self._remaining == 0:
            self._done = True
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self._done:
            return b""
        if self._chunk_left == 0:
            line = self._rfile.readline(1024)
            if not line:
                raise IncompleteBodyError("client closed the connection mid-body")
            size_text = line.split(b";", 1)[0].strip()
            try:
                self._chunk_left = int(size_text, 16)
            except ValueError:
                raise BadBodyError(f"bad chunk size line {line!r}") from None
            if self._chunk_left < 0:
                raise BadBodyError("negative chunk size")
            if self._chunk_left == 0:
                # Trailer section up to the empty line.
                while True:
                    trailer = self._rfile.readline(8192)
                    if trailer in (b"\r\n", b"\n", b""):
                        break
                self._done = True
                return b""
        data = self._rfile.read(min(size, self._chunk_left))
        if not data:
            raise IncompleteBodyError("client closed the connection mid-body")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._rfile.readline(16)  # CRLF after the chunk data
        return data


@dataclass
class Request:
    """One parsed HTTP request; the body is still on the socket (`body` streams it)."""

    method: str
    target: str  # raw request target, as sent (path and query)
    path: str  # raw path without the query, prefix included, not percent-decoded
    query: str
    headers: Mapping[str, str]
    body: RequestBody
    client_host: str = ""  # the peer's address (the stand-in's control API is loopback-only)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)


@dataclass
class Response:
    """An answer: a byte body, an open file to stream (`stream`, `stream_len`), or chunks
    sent with `Transfer-Encoding: chunked` and no Content-Length (`chunks`)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: BinaryIO | None = None
    stream_len: int = 0
    close: bool = False
    chunks: Iterator[bytes] | None = None


def drop_nulls(value: Any) -> Any:
    """A JSON value without null object members, as Jackson's NON_NULL writes it."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def html_response(status: int, page: bytes, *, close: bool = False) -> Response:
    return Response(status, [("Content-Type", "text/html; charset=utf-8")], page, close=close)
