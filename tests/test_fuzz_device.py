"""Property tests for what the device takes from outside: the config loader (any text: a Config or one
ConfigError line, nothing else) and the query server's request parser (any bytes from a client: a JSON reply
below 500 or a closed connection, and the daemon stays healthy), plus the notify socket that nobody reads."""

from __future__ import annotations

import json
import os
import socket
import string
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octopus.device import sd_notify
from octopus.device.config import ConfigError, parse_config

SECTIONS = ["model", "camera", "button", "queries", "daemon", "outbox", "actions", "actions.smtp", "actions.links"]
KEYS = ["path", "kind", "pin", "bounce_ms", "hold_s", "listen", "threads", "precision", "max_attempts", "host",
        "port", "timeout_s", "execute", "state_dir", "max_inference_s", "send_email", "password_file", "width"]
VALUES = st.one_of(st.integers(-10**30, 10**30).map(str), st.floats(allow_nan=True).map(lambda f: repr(f).lower()),
                   st.text(max_size=30).map(json.dumps), st.sampled_from(["true", "false", "inf", "nan", "-inf", "[]",
                                                                         "{}", '"127.0.0.1:0"', '"[::1]:80"',
                                                                         '"unix:"', "[1, 2]"]))


@st.composite
def config_texts(draw):
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        lines.append(f"[{draw(st.sampled_from(SECTIONS))}]")
        for _ in range(draw(st.integers(0, 4))):
            lines.append(f"{draw(st.sampled_from(KEYS))} = {draw(VALUES)}")
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.text(max_size=20)))
    return "\n".join(lines) + "\n"


@settings(max_examples=400, deadline=None)
@given(config_texts())
def test_any_config_text_is_a_config_or_one_config_error_line(text):
    try:
        parse_config(text)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)


METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"\xff", b"POST /ask"])
PATHS = st.sampled_from([b"/query", b"/press", b"/ask", b"/status", b"/health", b"/", b"/%00", b"//query", b"*"])
BODIES = st.one_of(st.binary(max_size=300), st.text(max_size=100).map(lambda t: json.dumps({"query": t}).encode()),
                   st.just(b"[" * 5000), st.just(b'{"query": "\\udce9"}'), st.just(b'{"gesture": "long"}'))


@st.composite
def raw_requests(draw):
    body = draw(BODIES)
    length = draw(st.one_of(st.just(str(len(body)).encode()), st.sampled_from([b"-1", b"abc", b"99999999999", b""]),
                            st.integers(0, 400).map(lambda n: str(n).encode())))
    headers = [b"Host: x", b"Content-Length: " + length, b"Content-Type: " + draw(st.sampled_from(
        [b"application/json", b"text/plain", b"\xff"]))]
    if draw(st.booleans()):
        headers.append(draw(st.text(string.printable, max_size=40)).encode().replace(b"\r", b"").replace(b"\n", b""))
    path = draw(PATHS)
    if path in (b"/press", b"/ask") and draw(st.booleans()):
        path = b"/query"  # keep most examples away from inference: this fuzzes the parser, not the model
    return draw(METHODS) + b" " + path + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body


@pytest.fixture(scope="module")
def fuzz_daemon(tiny_onnx, tmp_path_factory):
    from conftest import free_port
    from test_daemon import write_config

    from octopus.device.daemon import Daemon

    root = tmp_path_factory.mktemp("fuzz")
    text = write_config(root, tiny_onnx, listen=f"127.0.0.1:{free_port()}").read_text()
    d = Daemon(parse_config(text.replace("[button]\n", "[button]\nenabled = false\n")))
    d.start()
    yield d
    d.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw_requests())
def test_any_request_bytes_get_a_json_reply_below_500_or_a_close(fuzz_daemon, raw):
    host, port = fuzz_daemon.config.queries.listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as conn:
        conn.sendall(raw)
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    if reply:
        head, _, body = reply.partition(b"\r\n\r\n")
        code = int(head.split()[1])
        assert code < 500 or code in (503, 504, 507), head  # 503: too many connections, 504: no answer in time
        if body and not raw.startswith(b"HEAD"):
            json.loads(body)
    deadline = time.monotonic() + 30  # a request that reached the model may still be running
    while fuzz_daemon.busy_since is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fuzz_daemon.healthy() == (True, "ok")


def test_a_notify_socket_nobody_reads_does_not_stall_the_daemon(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    try:
        sent, start = 0, time.monotonic()
        while sd_notify.notify("STATUS=" + "x" * 200) and time.monotonic() - start < 60:
            sent += 1  # fills the listener's queue (nobody reads it)
        refused_after = time.monotonic() - start
        t0 = time.monotonic()
        assert sd_notify.notify("WATCHDOG=1") is False
        assert time.monotonic() - t0 < 5 and sent > 0 and refused_after < 60
    finally:
        listener.close()
        os.unlink(path)
