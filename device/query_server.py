"""The query endpoint: loopback HTTP or a Unix socket where a phone shortcut or an SSH user posts text.

    POST /query  {"query": "..."} or plain text   the next button press uses it          → 202
    POST /press  {"gesture": "short" | "hold"}      as if the button was pressed           → 202, 409 busy
    POST /ask    {"query": "..."}                   capture + answer now, wait for result → 200, 409 busy
    GET  /status                                    counts, latency, outbox, recent results
    GET  /health                                    200 while the health check passes, else 503

No authentication, so the config validator allows only loopback addresses and Unix sockets (whose file
mode, 0660, and the service's group say who may post). Bodies over 16 KiB are refused. The handlers only
hand requests to the daemon's worker; they never touch the camera or the model.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from octopus.device.daemon import GESTURES, Busy, Request

log = logging.getLogger("octopus.daemon.http")
MAX_BODY = 16 * 1024
ASK_TIMEOUT_S = 120


class Handler(BaseHTTPRequestHandler):
    server_version = "octopus"
    daemon = None  # set per server class

    def address_string(self) -> str:  # a Unix socket peer has no host
        return self.client_address[0] if isinstance(self.client_address, tuple) else "unix"

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _reply(self, status: int, payload: dict) -> None:
        body = (json.dumps(payload, ensure_ascii=False) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict | None:
        """The request body as a dict ({"query": text} for plain text); replies and returns None when bad."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY} bytes"})
            return None
        raw = self.rfile.read(length) if length else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "body is not UTF-8"})
            return None
        if "json" not in (self.headers.get("Content-Type") or "") and not text.lstrip().startswith("{"):
            return {"query": text}
        try:
            data = json.loads(text or "{}")
        except json.JSONDecodeError as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"not JSON ({exc.msg})"})
            return None
        if not isinstance(data, dict):
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "expected a JSON object"})
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
            self._reply(HTTPStatus.OK, request.future.result(timeout=ASK_TIMEOUT_S))
        except TimeoutError:
            self._reply(HTTPStatus.GATEWAY_TIMEOUT, {"error": "no answer in time"})


class UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


class IPv6HTTPServer(ThreadingHTTPServer):
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
        server_class = IPv6HTTPServer if host.startswith("[") else ThreadingHTTPServer
        server = server_class((host.strip("[]"), int(port)), handler)
    threading.Thread(target=server.serve_forever, name="query-endpoint", daemon=True).start()
    log.info("query endpoint on %s", listen)
    return server
