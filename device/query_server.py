"""The query endpoint: loopback HTTP or a Unix socket where a phone shortcut or an SSH user posts text.

    POST /query  {"query": "..."} or plain text   the next button press uses it          → 202
    POST /press  {"gesture": "short" | "hold"}      as if the button was pressed           → 202, 409 busy
    POST /ask    {"query": "..."}                   capture + answer now, wait for result → 200, 409 busy
    GET  /status                                    counts, latency, outbox, recent results
    GET  /health                                    200 while the health check passes, else 503

No authentication, so the config validator allows only loopback addresses and Unix sockets (whose file
mode, 0660, and the service's group say who may post). Bodies over 16 KiB, a missing, negative or
non-numeric Content-Length, a chunked body, JSON nested deeper than 32 levels and text that is not valid
Unicode are refused with a 4xx and one log line, and the connection closed.

A connection that has sent nothing yet waits in a waiting room (one thread and a selector for all of them,
no handler thread): it is closed after 10 s of silence, and beyond 512 waiting the oldest is closed, so a
flood of idle connections neither exhausts the file descriptors (LimitNOFILE=1024) nor keeps `/health`
from an answer. At most 64 requests are served at once: the next gets a 503 at once, except `GET /health`,
which is still answered. A handler drops a client silent for 10 s mid-request; the listen backlog is 128.
The handlers only hand requests to the daemon's worker; they never touch the camera or the model.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import selectors
import socket
import socketserver
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from octopus.device.requests import GESTURES, Busy, Request

log = logging.getLogger("octopus.daemon.http")
MAX_BODY = 16 * 1024
MAX_DEPTH = 32
ASK_TIMEOUT_S = 120
IDLE_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 64
MAX_WAITING = 512
BACKLOG = 128
LINGER_BYTES = 1 << 20
LINGER_S = 1.0


def _depth(text: str) -> int:
    """The deepest nesting of JSON brackets outside strings (checked before json.loads recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


class Handler(BaseHTTPRequestHandler):
    server_version = "octopus"
    default_request_version = "HTTP/1.0"  # a junk or HTTP/0.9 request line still gets a status line and headers
    daemon = None  # set per server class
    timeout = IDLE_TIMEOUT_S  # per socket operation: a silent or trickling client is dropped

    linger = False  # set by an error reply: drain what the client still sends before closing

    def finish(self) -> None:
        """After an error reply, read and drop what the client is still sending (at most LINGER_BYTES or
        LINGER_S) before the close: closing a socket with unread data resets it, and the reset can destroy the
        reply before the client reads it (a client uploading too large a body would never see its 413)."""
        super().finish()
        if not self.linger:
            return
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.2)
            deadline, drained = time.monotonic() + LINGER_S, 0
            while time.monotonic() < deadline and drained < LINGER_BYTES:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    def address_string(self) -> str:  # a Unix socket peer has no host
        return self.client_address[0] if isinstance(self.client_address, tuple) else "unix"

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _reply(self, status: int, payload: dict) -> None:
        body = (json.dumps(payload, ensure_ascii=False) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if status >= 400:  # a refused request may have left its body unread: never parse that as a request
            self.close_connection = self.linger = True
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The server's own errors (bad request line, oversized headers, a method it does not take) in the same
        one-line JSON as every other reply, and the connection closed."""
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command!r} not allowed: use GET or POST"
        self.close_connection = True
        try:
            self._reply(code, {"error": message or HTTPStatus(code).phrase})
        except OSError:
            pass

    def _body(self) -> dict | None:
        """The request body as a dict ({"query": text} for plain text); replies and returns None when bad."""
        if self.headers.get("Transfer-Encoding"):  # chunked bodies are not read: refused, never misread as empty
            self._reply(HTTPStatus.LENGTH_REQUIRED, {"error": "send the body with a Content-Length, not chunked"})
            return None
        declared = (self.headers.get("Content-Length") or "0").strip()
        if not declared.isdigit():  # "-1" or "abc": rfile.read(-1) would read to EOF, unbounded
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "Content-Length must be a non-negative integer"})
            return None
        length = int(declared)
        if length > MAX_BODY:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY} bytes"})
            return None
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"body shorter than its Content-Length ({len(raw)} bytes)"})
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "body is not UTF-8"})
            return None
        if "json" not in (self.headers.get("Content-Type") or "") and not text.lstrip().startswith("{"):
            return {"query": text}
        if _depth(text) > MAX_DEPTH:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"JSON nested deeper than {MAX_DEPTH} levels"})
            return None
        try:
            data = json.loads(text or "{}")
        except (json.JSONDecodeError, RecursionError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"not JSON ({getattr(exc, 'msg', 'too deep')})"})
            return None
        if not isinstance(data, dict):
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "expected a JSON object"})
            return None
        query = data.get("query")
        if isinstance(query, str):
            try:
                query.encode("utf-8")  # a lone surrogate ("\\udce9") decodes from JSON but is no text
            except UnicodeEncodeError:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": "query is not valid Unicode text"})
                return None
        return data

    def do_GET(self) -> None:
        if self.path == "/status":
            self._reply(HTTPStatus.OK, self.daemon.status())
        elif self.path == "/health":
            ok, reason = self.daemon.healthy()
            self._reply(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, {"healthy": ok, "health": reason})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path}"})

    def do_POST(self) -> None:
        if self.path not in ("/query", "/press", "/ask"):
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path}"})
            return
        data = self._body()
        if data is None:
            return
        query = data.get("query")
        if query is not None and (not isinstance(query, str) or not query.strip()):
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "query must be a non-empty string"})
            return
        if self.path == "/query":
            if query is None:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": "no query"})
                return
            self.daemon.set_query(query)
            self._reply(HTTPStatus.ACCEPTED, {"pending_query": query.strip()})
            return
        gesture = data.get("gesture", "short" if self.path == "/press" else "ask")
        if self.path == "/press" and gesture not in GESTURES:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"gesture must be one of {', '.join(GESTURES)}"})
            return
        if self.path == "/ask" and query is None:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "no query"})
            return
        try:
            request = self.daemon.submit(Request(gesture, query=query, source="http"))
        except Busy as exc:
            self._reply(HTTPStatus.CONFLICT, {"error": f"dropped: {exc} with the previous request"})
            return
        if self.path == "/press":
            self._reply(HTTPStatus.ACCEPTED, {"accepted": gesture})
            return
        try:
            result = request.future.result(timeout=ASK_TIMEOUT_S)
            # the answer was computed but the outbox could not record its action (disk full): nothing will run
            self._reply(HTTPStatus.INSUFFICIENT_STORAGE if result.get("not_queued") else HTTPStatus.OK, result)
        except TimeoutError:
            self._reply(HTTPStatus.GATEWAY_TIMEOUT, {"error": "no answer in time"})


class _WaitingRoom:
    """Accepted connections that have not sent a byte yet, watched by one thread: the first byte hands a
    connection to a handler thread; silence past the handler's timeout, or more than MAX_WAITING waiting,
    closes the oldest. Idle connections so cost a file descriptor each, never a thread or a request slot."""

    def __init__(self, dispatch, idle_timeout, close):
        self.dispatch, self.idle_timeout, self.close_connection = dispatch, idle_timeout, close
        self.selector = selectors.DefaultSelector()
        self.incoming: collections.deque = collections.deque()
        self.waiting: dict = {}  # socket -> (arrived, address), oldest first
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="query-waiting-room", daemon=True)
        self.thread.start()

    def add(self, connection, address) -> None:
        self.incoming.append((connection, address))
        self._wake()

    def _wake(self) -> None:
        try:
            self.wake_w.send(b"\0")
        except OSError:  # the pipe is full: the thread is awake already
            pass

    def _run(self) -> None:
        while not self.closed:
            try:
                self._round()
            except Exception as exc:  # one bad connection must not stop the endpoint: log it and go on
                log.warning("query endpoint waiting room: %s: %s", type(exc).__name__, exc)
                time.sleep(0.1)
        for connection in list(self.waiting):
            self._drop(connection)
        self.selector.close()
        self.wake_r.close()
        self.wake_w.close()

    def _round(self) -> None:
        """One pass: hand over connections that spoke, take in new ones, close the silent and the surplus."""
        for key, _ in self.selector.select(timeout=0.5):
            if key.fileobj is self.wake_r:
                try:
                    while self.wake_r.recv(4096):
                        pass
                except OSError:
                    pass
                continue
            self.selector.unregister(key.fileobj)
            _, address = self.waiting.pop(key.fileobj)
            self.dispatch(key.fileobj, address)
        while self.incoming:
            connection, address = self.incoming.popleft()
            try:
                self.selector.register(connection, selectors.EVENT_READ)
            except (ValueError, OSError):  # closed meanwhile
                continue
            self.waiting[connection] = (time.monotonic(), address)
        now, limit = time.monotonic(), self.idle_timeout()
        surplus = len(self.waiting) - MAX_WAITING
        for connection, (arrived, _) in list(self.waiting.items()):
            if surplus <= 0 and now - arrived <= limit:
                break  # oldest first: the rest arrived later
            surplus -= 1
            self._drop(connection)

    def _drop(self, connection) -> None:
        self.waiting.pop(connection, None)
        try:
            self.selector.unregister(connection)
        except (KeyError, ValueError):
            pass
        self.close_connection(connection)

    def close(self) -> None:
        self.closed = True
        self._wake()
        self.thread.join(timeout=5)


class _Bounded:
    """Connections wait in a _WaitingRoom until they send something; then at most MAX_CONNECTIONS handler
    threads, and the next request gets a 503 and is closed at once. Errors in a handler are one log line, not a
    traceback on stderr."""

    daemon_threads = True
    request_queue_size = BACKLOG

    def _slots(self) -> threading.BoundedSemaphore:
        if not hasattr(self, "_semaphore"):
            self._semaphore = threading.BoundedSemaphore(MAX_CONNECTIONS)
        return self._semaphore

    def _room(self) -> _WaitingRoom:
        if not hasattr(self, "_waiting_room"):
            self._waiting_room = _WaitingRoom(self._dispatch, lambda: self.RequestHandlerClass.timeout,
                                              self.shutdown_request)
        return self._waiting_room

    last_accept_error: tuple[float, str] | None = None

    def get_request(self):
        try:
            connection = super().get_request()
        except OSError as exc:  # e.g. EMFILE: the server cannot take connections, and /health must say so
            self.last_accept_error = (time.monotonic(), f"{type(exc).__name__}: {exc}")
            raise
        self.last_accept_error = None
        return connection

    def accepting(self) -> tuple[bool, str]:
        """False while accepting a connection failed in the last 30 s."""
        error = self.last_accept_error
        if error is not None and time.monotonic() - error[0] < 30:
            return False, f"the query endpoint cannot accept connections ({error[1]})"
        if hasattr(self, "_waiting_room") and not self._waiting_room.thread.is_alive():
            return False, "the query endpoint's waiting room has stopped"
        return True, "ok"

    def waiting(self) -> int:
        return len(self._room().waiting)

    def process_request(self, request, client_address):
        self._room().add(request, client_address)

    def _dispatch(self, request, client_address):
        if not self._slots().acquire(blocking=False):
            if self._answer_health(request):
                return
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Content-Length: 33\r\nConnection: close\r\n\r\n"
                                b'{"error": "too many connections"}')
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started (e.g. out of threads): the slot is not taken
            self._slots().release()
            self.shutdown_request(request)
            log.warning("could not start a handler thread for %s", client_address or "unix")

    def _answer_health(self, request) -> bool:
        """With every handler busy (say, 64 clients trickling their headers), `GET /health` is still answered,
        from the waiting room's thread: it has no body to wait for."""
        try:
            head = request.recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return False
        if not head.startswith(b"GET /health "):
            return False
        ok, reason = self.RequestHandlerClass.daemon.healthy()
        body = (json.dumps({"healthy": ok, "health": reason, "handlers": "all busy"}) + "\n").encode()
        status = b"200 OK" if ok else b"503 Service Unavailable"
        try:
            request.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
                            + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        except OSError:
            pass
        self.shutdown_request(request)
        return True

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots().release()

    def server_close(self):
        self._room().close()
        super().server_close()

    def handle_error(self, request, client_address):
        import sys

        error = sys.exc_info()[1]
        log.warning("request from %s failed: %s: %s", client_address or "unix", type(error).__name__, error)


class UnixHTTPServer(_Bounded, socketserver.ThreadingUnixStreamServer):
    pass


class TCPHTTPServer(_Bounded, ThreadingHTTPServer):
    pass


class IPv6HTTPServer(TCPHTTPServer):
    address_family = socket.AF_INET6


def serve(listen: str, daemon) -> socketserver.BaseServer:
    """Start the endpoint on a background thread; returns the server (shutdown() + server_close() to stop)."""
    handler = type("BoundHandler", (Handler,), {"daemon": daemon})
    if listen.startswith("unix:"):
        path = Path(listen[len("unix:"):])
        path.unlink(missing_ok=True)
        server = UnixHTTPServer(str(path), handler)
        os.chmod(path, 0o660)
    else:
        host, _, port = listen.rpartition(":")
        server_class = IPv6HTTPServer if host.startswith("[") else TCPHTTPServer
        server = server_class((host.strip("[]"), int(port)), handler)
    threading.Thread(target=server.serve_forever, name="query-endpoint", daemon=True).start()
    log.info("query endpoint on %s", listen)
    return server
