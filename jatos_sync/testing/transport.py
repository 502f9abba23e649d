"""HTTP/1.1 transport of the stand-in: sockets, keep-alive, faults, connection bookkeeping.

Owns the `ThreadingHTTPServer` (one daemon thread per connection, all tracked so `close()`
can cut and join them), reading the raw request line (nothing pre-decodes the path),
building the streaming `RequestBody`, applying `Faults` in front of the application, and
writing responses (files streamed in chunks). JATOS behaviour lives in `app.py`.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO, Protocol, cast

from jatos_sync.testing import wire
from jatos_sync.testing.faults import SIGN_IN_PAGE, Faults, proxy_error_page
from jatos_sync.testing.wire import Request, Response, html_response

_COPY_CHUNK = 256 * 1024
_LINGER_S = 5.0


class Backend(Protocol):
    """What the transport needs from the server it fronts."""

    @property
    def faults(self) -> Faults: ...

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def stop_event(self) -> threading.Event: ...

    def handle(self, req: Request) -> Response: ...

    def too_large(self, req: Request) -> Response: ...

    def internal_error(self, req: Request) -> Response: ...

    def record(self, method: str, target: str, path: str, status: int, bytes_in: int) -> None: ...


class StandInHTTPServer(ThreadingHTTPServer):
    """Tracks connection threads and sockets so `close()` can cut and join them all."""

    daemon_threads = True
    block_on_close = False  # the stdlib does not track daemon threads; we do
    allow_reuse_address = True  # restart() binds the same port again at once

    def __init__(
        self, address: tuple[str, int], backend: Backend, *, family: socket.AddressFamily
    ) -> None:
        self.address_family = family
        self.backend = backend
        self._conn_lock = threading.Lock()
        self._conn_threads: set[threading.Thread] = set()
        self._conn_sockets: set[socket.socket] = set()
        self._serve_thread: threading.Thread | None = None
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a DNS lookup that can hang; not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def start(self) -> None:
        self._serve_thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"jatos-standin-{self.port}",
            daemon=True,
        )
        self._serve_thread.start()

    def close(self, *, join_timeout_s: float = 5.0) -> None:
        """Stop accepting, close the listening socket, cut every connection, join threads."""
        self.shutdown()
        if self._serve_thread is not None:
            self._serve_thread.join(join_timeout_s)
        self.server_close()
        with self._conn_lock:
            sockets = list(self._conn_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + join_timeout_s
        while time.monotonic() < deadline:
            with self._conn_lock:
                threads = list(self._conn_threads)
            if not threads:
                return
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="jatos-standin-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._conn_threads.add(thread)
            self._conn_sockets.add(request)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._conn_threads.discard(threading.current_thread())
                self._conn_sockets.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection errors are expected (drops, kills, clients going away): stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    """One connection; its requests are handled in sequence (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "JATOS-standin"
    # Like JATOS's Akka/Netty front end: without TCP_NODELAY, headers and body written
    # separately meet the client's delayed ACK and every keep-alive request waits ~40 ms.
    disable_nagle_algorithm = True
    timeout = 300
    server: StandInHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read the request records; tokens must never reach a log."""

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._dispatch()

    # Play has no 405: other methods reach the router and get its 404.
    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    # ------------------------------------------------------------------

    def _raw_target(self) -> str:
        # self.path may have been rewritten (leading "//" collapsed); the request line is raw.
        words = self.requestline.split()
        target = words[1] if len(words) >= 2 else self.path
        if not target.startswith("/") and "://" in target:  # absolute-form request target
            rest = target.split("://", 1)[1]
            slash = rest.find("/")
            target = rest[slash:] if slash >= 0 else "/"
        return target

    def _dispatch(self) -> None:
        target = self._raw_target()
        raw_path, _, query = target.partition("?")
        # The request line arrives as ISO-8859-1 text; non-ASCII bytes are meant as UTF-8.
        path = raw_path.encode("latin-1", "replace").decode("utf-8", "replace")
        self._current = (self.command, target, path)
        self._body: wire.RequestBody | None = None
        self._recorded = False
        try:
            self._body = self._make_body()
            if self._body is None:
                self._send(Response(400, body=b"bad request", close=True))
                return
            headers = cast("dict[str, str]", self.headers)
            request = Request(
                self.command, target, path, query, headers, self._body, str(self.client_address[0])
            )
            self._exchange(self.server.backend, request)
        except OSError:  # the client went away, or close() cut the connection
            self.close_connection = True
        finally:
            self._record(0)

    def _record(self, status: int) -> None:
        """Log the request once, *before* its answer leaves, so a client that has seen the
        answer (or the dropped connection) always finds the record."""
        if self._recorded:
            return
        self._recorded = True
        bytes_in = self._body.bytes_read if self._body is not None else 0
        method, target, path = self._current
        self.server.backend.record(method, target, path, status, bytes_in)

    def _make_body(self) -> wire.RequestBody | None:
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length: int | None = None
        if not chunked:
            raw = self.headers.get("Content-Length")
            if raw is not None:
                try:
                    length = int(raw)
                except ValueError:
                    return None
                if length < 0:
                    return None
        return wire.RequestBody(cast(BinaryIO, self.rfile), length=length, chunked=chunked)

    def _exchange(self, backend: Backend, req: Request) -> int:
        """Faults first, in the order a proxy chain applies them, then the application."""
        faults = backend.faults
        if faults.latency_s > 0:
            backend.stop_event.wait(faults.latency_s)
        action = faults.decide(req.method)
        if action is not None and action.kind == "drop":
            self._drop()
            return 0
        lose = action is not None and action.kind == "lose"
        if lose:
            action = None
        proxy_limit = faults.proxy_max_body_bytes
        if proxy_limit is not None:
            declared = req.body.declared_length
            if declared is not None and declared > proxy_limit:
                return self._proxy_too_large(backend)
            req.body.proxy_max_bytes = proxy_limit
        try:
            if action is not None:  # an upstream error page from the proxy
                req.body.drain()
                return self._send(html_response(action.status, proxy_error_page(action.status)))
            if faults.login_redirect:  # an SSO gateway in front of JATOS
                req.body.drain()
                if req.path == "/login":
                    return self._send(html_response(200, SIGN_IN_PAGE))
                response = html_response(302, SIGN_IN_PAGE)
                response.headers.append(("Location", "/login"))
                return self._send(response)
            declared = req.body.declared_length
            if declared is not None and declared > backend.max_body_bytes:
                req.body.drain()
                return self._send(backend.too_large(req))
            req.body.max_bytes = backend.max_body_bytes
            try:
                response = backend.handle(req)
            except wire.BadBodyError:
                return self._send(Response(400, body=b"bad request", close=True))
            except (wire.BodyTooLargeError, ConnectionError, TimeoutError):
                raise  # proxy 413, or the socket is gone
            except Exception:  # anything else (disk errors included) is JATOS's generic 500
                with contextlib.suppress(Exception):
                    req.body.drain()
                response = backend.internal_error(req)
            if lose:  # the work is done; the answer never reaches the client
                for stream in (response.stream, response.chunks):
                    if stream is not None and hasattr(stream, "close"):
                        stream.close()
                self._drop()
                return 0
            return self._send(response)
        except wire.BodyTooLargeError:
            return self._proxy_too_large(backend)

    def _send(self, response: Response) -> int:
        self._record(response.status)
        try:
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            if response.chunks is not None:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                length = response.stream_len if response.stream is not None else len(response.body)
                self.send_header("Content-Length", str(length))
            if response.close:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                if response.chunks is not None:
                    self._send_chunks(response.chunks)
                elif response.stream is not None:
                    shutil.copyfileobj(response.stream, self.wfile, _COPY_CHUNK)
                elif response.body:
                    self.wfile.write(response.body)
        finally:
            if response.stream is not None:
                response.stream.close()
            if response.chunks is not None and hasattr(response.chunks, "close"):
                response.chunks.close()
        return response.status

    def _send_chunks(self, chunks: Iterator[bytes]) -> None:
        """Chunked transfer coding; the stream may end early (a truncated answer still ends
        with a proper last chunk, as Play's chunked results do)."""
        for chunk in chunks:
            if chunk:
                self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _drop(self) -> None:
        """Close without any response (a crashed proxy or a network cut)."""
        self._record(0)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _proxy_too_large(self, backend: Backend) -> int:
        """nginx `client_max_body_size`: HTML 413, body not processed, connection closed.

        Like nginx's lingering close, unread input is discarded for a short while after the
        answer, so the client gets to read the 413 instead of a connection reset.
        """
        status = self._send(html_response(413, proxy_error_page(413), close=True))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.2)
            deadline = time.monotonic() + _LINGER_S
            while time.monotonic() < deadline and not backend.stop_event.is_set():
                try:
                    if not self.connection.recv(_COPY_CHUNK):
                        break
                except TimeoutError:
                    continue
        return status
