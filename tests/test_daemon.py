"""The daemon with real parts: a tiny exported model on onnxruntime, a file camera, gpiozero's MockFactory
button, the loopback HTTP and Unix-socket endpoints, and systemd's notify protocol over a real socket."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, make_bad_images
from PIL import Image

from octopus.device.button import GestureButton
from octopus.device.camera import CameraError, FileCamera, Picamera2Camera, V4L2Camera
from octopus.device.config import parse_config
from octopus.device.daemon import Daemon

OCTOPUS = [sys.executable, "-m", "octopus.cli"]


@pytest.fixture
def mock_factory():
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    yield factory
    factory.close()


def write_config(tmp_path: Path, model: Path, listen: str = "", extra: str = "") -> Path:
    frames = tmp_path / "frames"
    frames.mkdir(exist_ok=True)
    if not any(frames.iterdir()):
        Image.new("RGB", (320, 240), (40, 120, 200)).save(frames / "frame.png")
    text = (f'[model]\npath = "{model}"\nmax_new_tokens = 12\n'
            f'[camera]\nkind = "file"\npath = "{frames}"\n'
            f'[button]\npin = 17\nbounce_ms = 0\nhold_s = 0.3\n'
            f'[queries]\nlisten = "{listen}"\nshort_press = "what is this"\nhold = "order this for me"\n'
            f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n{extra}')
    (tmp_path / "config.toml").write_text(text)
    return tmp_path / "config.toml"


@pytest.fixture
def daemon(tiny_onnx, tmp_path, mock_factory):
    config = parse_config(write_config(tmp_path, tiny_onnx, listen=f"127.0.0.1:{free_port()}").read_text())
    d = Daemon(config, pin_factory=mock_factory)
    d.start()
    yield d
    d.stop()


def wait_for(predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def press(pin, hold_s: float = 0.0):
    pin.drive_low()  # pull-up: low is pressed
    time.sleep(hold_s)
    pin.drive_high()


def call(daemon_or_url, method: str, path: str, body: bytes | None = None, content_type="application/json"):
    url = daemon_or_url if isinstance(daemon_or_url, str) else f"http://{daemon_or_url.config.queries.listen}"
    request = urllib.request.Request(url + path, data=body, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_short_press_and_hold_answer_with_their_default_queries(daemon, mock_factory):
    pin = mock_factory.pin(17)
    press(pin)
    assert wait_for(lambda: daemon.counts["requests"] == 1 and daemon.busy_since is None)
    press(pin, hold_s=0.5)
    assert wait_for(lambda: daemon.counts["requests"] == 2 and daemon.busy_since is None)
    first, second = daemon.recent
    assert (first["gesture"], first["query"]) == ("short", "what is this")
    assert (second["gesture"], second["query"]) == ("hold", "order this for me")
    assert first["raw"].startswith("<nexa_") and first["total_ms"] > 0
    assert daemon.counts["dropped"] == 0


def test_a_press_during_inference_is_dropped_not_queued(daemon, mock_factory, tmp_path):
    rng = np.random.default_rng(0)  # a big noisy frame: decoding it keeps the worker busy for a while
    Image.fromarray(rng.integers(0, 255, (2400, 3200, 3), dtype=np.uint8)).save(tmp_path / "frames" / "big.png")
    pin = mock_factory.pin(17)
    press(pin)
    press(pin)  # the first is still being captured and answered
    press(pin)
    assert wait_for(lambda: daemon.counts["requests"] == 1 and daemon.busy_since is None)
    time.sleep(0.3)
    assert daemon.counts["requests"] == 1 and daemon.counts["dropped"] == 2
    press(pin)  # idle again: taken
    assert wait_for(lambda: daemon.counts["requests"] == 2)


def test_own_debounce_and_hold_on_a_mock_pin(mock_factory):
    gestures = []
    button = GestureButton(27, gestures.append, bounce_ms=300, hold_s=0.2, pin_factory=mock_factory)
    pin = mock_factory.pin(27)
    for _ in range(3):  # contact bounce: three edges within a few ms
        press(pin, 0.002)
    assert gestures == ["short"]
    time.sleep(0.4)
    press(pin, 0.8)  # margins wide enough for a loaded CI machine
    assert gestures == ["short", "hold"]  # a hold fires once, and its release adds nothing
    time.sleep(0.4)
    press(pin)
    assert gestures == ["short", "hold", "short"]
    button.close()


def test_posted_query_is_used_by_the_next_press_only(daemon, mock_factory):
    status, body = call(daemon, "POST", "/query", b"where can I recycle this", "text/plain")
    assert status == 202 and body["pending_query"] == "where can I recycle this"
    pin = mock_factory.pin(17)
    press(pin)
    assert wait_for(lambda: daemon.counts["requests"] == 1 and daemon.busy_since is None)
    press(pin)
    # (the count goes up when a request starts, `recent` gets it when it ends)
    assert wait_for(lambda: daemon.counts["requests"] == 2 and len(daemon.recent) == 2)
    assert [r["query"] for r in daemon.recent] == ["where can I recycle this", "what is this"]


def test_ask_status_and_health_endpoints(daemon):
    status, answer = call(daemon, "POST", "/ask", json.dumps({"query": "把这个寄给妈妈"}).encode())
    assert status == 200 and answer["query"] == "把这个寄给妈妈" and answer["raw"].startswith("<nexa_")
    assert "timings_ms" in answer and "image_encode" in answer["timings_ms"]
    status, report = call(daemon, "GET", "/status")
    assert status == 200 and report["requests"] == 1 and report["healthy"] and report["p95_ms"] > 0
    assert call(daemon, "GET", "/health") == (200, {"healthy": True, "health": "ok"})


@pytest.mark.parametrize("path, body, code", [
    ("/ask", b"{not json", 400),
    ("/ask", b'{"query": ""}', 400),
    ("/ask", b'["a list"]', 400),
    ("/press", b'{"gesture": "double"}', 400),
    ("/query", b"x" * 20_000, 413),
    ("/nowhere", b"{}", 404),
])
def test_bad_requests_get_a_clear_error(daemon, path, body, code):
    status, reply = call(daemon, "POST", path, body)
    assert status == code and reply["error"]
    assert call(daemon, "GET", "/health")[0] == 200  # and the daemon carries on


def _raw(daemon, data: bytes, timeout: float = 15.0) -> bytes:
    """Send raw bytes to the endpoint and read until the server closes (what a hostile client sees)."""
    import socket

    host, _, port = daemon.config.queries.listen.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("declared, body, expect", [
    (b"-1", b'{"query": "read me to the end"}', b"non-negative integer"),  # rfile.read(-1) read to EOF
    (b"abc", b'{"query": "x"}', b"non-negative integer"),
    (b"40", b'{"query": "x"}', b"shorter than its Content-Length"),
    (None, b'{"a":' + b"[" * 7990 + b"]" * 7990 + b"}", b"nested deeper"),  # json.loads: RecursionError
    (None, b'{"query": "\\udce9"}', b"not valid Unicode"),  # a lone surrogate
])
def test_hostile_bodies_get_a_4xx_and_the_daemon_carries_on(daemon, caplog, declared, body, expect):
    declared = declared or str(len(body)).encode()
    reply = _raw(daemon, b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + declared + b"\r\n\r\n" + body)
    assert reply.startswith(b"HTTP/1.0 400") and expect in reply, reply[:300]
    assert len(reply) < 2000  # nothing echoed back
    assert call(daemon, "GET", "/status")[1]["pending_query"] is None
    assert call(daemon, "GET", "/health")[0] == 200
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("request_bytes, expect", [
    (b"POST /query HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     b"HTTP/1.0 411"),  # was read as an empty body
    (b"\x00\xff\xfe junk \x01\r\n\r\n", b"HTTP/1.0 400"),  # was a bare JSON body, no status line
    (b"GET /health\r\n", b"HTTP/1.0 200"),  # HTTP/0.9: answered with a status line too
])
def test_odd_request_framing_gets_a_status_line_and_json(daemon, request_bytes, expect):
    reply = _raw(daemon, request_bytes)
    assert reply.startswith(expect), reply[:200]
    assert json.loads(reply.partition(b"\r\n\r\n")[2])


def test_a_refused_body_closes_the_connection(daemon):
    """After a 413 the unread body must never be parsed as the next request on a kept-alive connection."""
    reply = _raw(daemon, b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n"
                 + b"GET /status HTTP/1.1\r\n\r\n" + b"x" * 19_973)
    assert reply.startswith(b"HTTP/1.0 413") and reply.count(b"HTTP/1.") == 1 and b"Connection: close" in reply


def test_an_overlong_request_is_one_line_for_ask_the_daemon_and_the_cli(daemon, tiny_onnx, tmp_path, caplog):
    page = "please order this " * 400  # a pasted page: thousands of tokens
    status, answer = call(daemon, "POST", "/ask", json.dumps({"query": page}).encode())
    assert status == 200 and "tokens long; the limit is" in answer["error"] and "raw" not in answer
    assert "Traceback" not in caplog.text and call(daemon, "GET", "/health")[0] == 200
    Image.new("RGB", (64, 48), "grey").save(tmp_path / "img.png")
    out = subprocess.run([*OCTOPUS, "ask", "--model", str(tiny_onnx), "--image", str(tmp_path / "img.png"),
                          "--query", page], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "tokens long; the limit is" in out.stderr


def test_silent_and_surplus_connections_are_bounded(daemon, monkeypatch):
    import socket

    from octopus.device import query_server

    host, _, port = daemon.config.queries.listen.rpartition(":")
    monkeypatch.setattr(query_server.Handler, "timeout", 1.0)  # the idle limit, shortened for the test
    silent = socket.create_connection((host, int(port)))
    silent.settimeout(5)
    assert silent.recv(100) == b""  # closed by the server after the idle limit, not held forever
    silent.close()
    trickle = socket.create_connection((host, int(port)))
    trickle.sendall(b"POST /ask HTTP/1.1\r\n")  # started a request, then went quiet: the handler drops it
    trickle.settimeout(5)
    assert trickle.recv(100) == b""
    trickle.close()
    monkeypatch.setattr(query_server.Handler, "timeout", 30.0)
    held = [socket.create_connection((host, int(port))) for _ in range(query_server.MAX_CONNECTIONS)]
    try:
        for conn in held:  # each holds a handler thread, halfway through its headers
            conn.sendall(b"POST /ask HTTP/1.1\r\nHost: x\r\n")
        assert wait_for(lambda: daemon.server._slots()._value == 0, timeout=10)
        surplus = socket.create_connection((host, int(port)), timeout=5)
        surplus.sendall(b"GET /status HTTP/1.1\r\n\r\n")
        assert surplus.recv(200).startswith(b"HTTP/1.1 503")  # answered at once, not queued behind the others
        surplus.close()
        assert call(daemon, "GET", "/health")[0] == 200  # health is still answered with every handler busy
    finally:
        for conn in held:
            conn.close()
    assert wait_for(lambda: call(daemon, "GET", "/health")[0] == 200, timeout=10)


def test_a_flood_of_idle_connections_takes_no_thread_and_health_still_answers(daemon):
    """More idle connections than the waiting room holds: the oldest are closed, /health answers throughout
    and the daemon stays far from LimitNOFILE=1024."""
    import socket

    from octopus.device import query_server

    host, _, port = daemon.config.queries.listen.rpartition(":")
    threads_before = threading.active_count()
    idle = [socket.create_connection((host, int(port))) for _ in range(query_server.MAX_WAITING + 200)]
    try:
        assert wait_for(lambda: daemon.server.waiting() == query_server.MAX_WAITING, timeout=10)
        assert call(daemon, "GET", "/health")[0] == 200
        assert threading.active_count() <= threads_before + 2
        idle[0].settimeout(5)
        assert idle[0].recv(100) == b""  # the oldest were closed to make room
        idle[-1].sendall(b"GET /health HTTP/1.1\r\n\r\n")  # a waiting connection is served when it speaks
        idle[-1].settimeout(5)
        assert idle[-1].recv(200).startswith(b"HTTP/1.0 200")
    finally:
        for conn in idle:
            conn.close()


def test_unix_socket_endpoint(tiny_onnx, tmp_path):
    sock_path = tmp_path / "q.sock"
    config = parse_config(write_config(tmp_path, tiny_onnx, listen=f"unix:{sock_path}",
                                       extra="").read_text().replace("[button]\n", "[button]\nenabled = false\n"))
    d = Daemon(config)
    d.start()
    try:
        assert oct(sock_path.stat().st_mode & 0o777) == "0o660"

        class UnixConnection(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(sock_path))

        conn = UnixConnection("localhost")
        conn.request("POST", "/ask", body=json.dumps({"query": "order two of these"}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["query"] == "order two of these"
    finally:
        d.stop()
    assert d.counts["requests"] == 1


def test_camera_errors_are_one_line_and_the_daemon_survives_them(daemon, tmp_path):
    (tmp_path / "frames" / "zz-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    status, answer = call(daemon, "POST", "/ask", b'{"query": "what is this"}')
    assert status == 200 and "not a readable image" in answer["error"] and "\n" not in answer["error"]
    (tmp_path / "frames" / "zz-broken.jpg").unlink()
    assert "raw" in call(daemon, "POST", "/ask", b'{"query": "what is this"}')[1]  # a frame again: answered
    with pytest.raises(CameraError, match="no image in"):
        (tmp_path / "empty").mkdir()
        FileCamera(tmp_path / "empty").capture()
    with pytest.raises(CameraError, match="no device at /dev/video99"):
        V4L2Camera("/dev/video99", 640, 480)
    with pytest.raises(CameraError, match="python3-picamera2"):
        Picamera2Camera(640, 480)


class NotifySocket:
    """A datagram socket standing in for systemd's: what the daemon tells systemd arrives here."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path = path
        self.received: list[str] = []

    def wait_for(self, text: str, timeout: float = 60) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in m for m in self.received):
                return True
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                pass
        return False


def test_daemon_process_notify_watchdog_and_sigterm(tiny_onnx, tmp_path):
    port = free_port()
    config = write_config(tmp_path, tiny_onnx, listen=f"127.0.0.1:{port}")
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000",
           "GPIOZERO_PIN_FACTORY": "mock"}
    proc = subprocess.Popen([*OCTOPUS, "daemon", "--config", str(config)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert notify.wait_for("READY=1"), "no READY=1"
        assert notify.wait_for("WATCHDOG=1", timeout=5), "no watchdog ping"
        status, answer = call(f"http://127.0.0.1:{port}", "POST", "/ask", b'{"query": "find my keys"}')
        assert status == 200 and answer["query"] == "find my keys"
        assert notify.wait_for("STATUS=ready; 1 requests")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert notify.wait_for("STOPPING=1", timeout=2)
    finally:
        proc.kill()
    log = proc.stderr.read()
    assert "ready: model" in log and "Traceback" not in log
    assert notify.received.index(next(m for m in notify.received if "READY=1" in m)) < \
        notify.received.index(next(m for m in notify.received if "STOPPING=1" in m))


@pytest.mark.parametrize("text, message", [
    ("[camera]\nsize = 3\n", "unknown key 'camera.size'"),
    ("[camera]\nwidth = \"wide\"\n", "'camera.width' must be int"),
    ("[camera]\nkind = \"webcam\"\n", "'camera.kind' must be one of picamera2, file, v4l2"),
    ("[queries]\nlisten = \"0.0.0.0:8765\"\n", "must be a loopback address"),
    ("[queries]\nlisten = \"::1:8766\"\n", "IPv6 addresses go in brackets, e.g. [::1]:8766"),
    ("[button]\npin = -1\n", "'button.pin' must be a BCM GPIO number from 0 to 27"),
    ("[button]\nbounce_ms = -5\n", "'button.bounce_ms' must be 0 or more"),
    ("[outbox]\nmax_attempts = 0\n", "'outbox.max_attempts' must be positive"),
    ("[actions.links]\n\"Fly Me\" = \"https://x/{q}\"\n", "'actions' names 'Fly Me', which is not a function name"),
    ("camera = 3\n", "'camera' must be a table"),
    ("[model\n", "not valid TOML"),
    ("[daemon]\nmax_inference_s = inf\n", "'daemon.max_inference_s' must be a finite number"),
    ("[daemon]\nmax_inference_s = nan\n", "'daemon.max_inference_s' must be a finite number"),
    ("[actions.smtp]\ntimeout_s = -1\n", "'actions.smtp.timeout_s' must be positive"),
    ("[actions.webhook]\ntimeout_s = 0\n", "'actions.webhook.timeout_s' must be positive"),
    ("[model]\nmax_new_tokens = 99999999999999999999\n", "'model.max_new_tokens' is out of range"),
    ("[model]\nmax_new_tokens = 5000\n", "'model.max_new_tokens' must be at most 1024"),
    ("[actions.smtp]\nport = 0\n", "'actions.smtp.port' must be a port from 1 to 65535"),
    ("[outbox]\nbackoff_s = 1e400\n", "'outbox.backoff_s' must be a finite number"),
    ("[model]\nreject_bias = { fr = 1.0 }\n", "'model.reject_bias' takes the languages en, zh, got 'fr'"),
    ("[model]\nreject_bias = { zh = \"high\" }\n", "'model.reject_bias.zh' must be float"),
    ("[model]\nreject_bias = { zh = 100 }\n", "'model.reject_bias.zh' must be between -50 and 50"),
    ("[model]\nreject_bias = 1.0\n", "'model.reject_bias' must be a table of numbers"),
])
def test_bad_config_is_one_line_with_exit_2(tmp_path, text, message):
    (tmp_path / "config.toml").write_text(text)
    out = subprocess.run([*OCTOPUS, "daemon", "--config", str(tmp_path / "config.toml")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert message in out.stderr and str(tmp_path / "config.toml") in out.stderr


def test_defaults_are_a_dry_run_and_a_missing_default_file_is_fine(tmp_path):
    from octopus.device.config import load_config

    config = load_config(None)
    assert config.actions.execute is False and config.queries.listen.startswith("127.0.0.1:")
    with pytest.raises(ValueError, match="no config file"):
        load_config(tmp_path / "missing.toml")


def test_corrupt_huge_and_non_image_files_are_refused_in_one_line(tiny_onnx, tmp_path):
    for kind, path in make_bad_images(tmp_path).items():
        out = subprocess.run([*OCTOPUS, "ask", "--model", str(tiny_onnx), "--image", str(path), "--query", "hi"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (kind, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, (kind, out.stderr)
        assert str(path) in out.stderr


def test_doctor_checks_every_part(tiny_onnx, tmp_path, smtp_server):
    server = smtp_server()
    config = write_config(tmp_path, tiny_onnx, listen=f"127.0.0.1:{free_port()}", extra=(
        f'[actions.smtp]\nhost = "127.0.0.1"\nport = {server.port}\nfrom_address = "pi@x.test"\n'
        f'ca_file = "{server.ca_file}"\n'))
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    out = subprocess.run([*OCTOPUS, "doctor", "--config", str(config)], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {line.split()[1]: line.split()[0] for line in out.stdout.splitlines()}
    assert lines == {"config": "ok", "model": "ok", "functions": "ok", "camera": "ok", "gpio": "ok", "queries": "ok",
                     "outbox": "ok", "smtp": "ok"}
    graph = tiny_onnx / "decoder_model_merged.int8.onnx"
    original = graph.read_bytes()
    try:
        graph.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        out = subprocess.run([*OCTOPUS, "doctor", "--config", str(config), "--no-network"], capture_output=True,
                             text=True, env=env, timeout=60)
    finally:
        graph.write_bytes(original)
    assert out.returncode == 1 and "FAIL  model" in out.stdout
    assert "does not match the sha256 in the manifest" in out.stdout


def test_doctor_checks_where_the_query_endpoint_would_listen(tiny_onnx, tmp_path):
    from octopus.device.doctor import check_queries

    def check(listen):
        return check_queries(parse_config(write_config(tmp_path, tiny_onnx, listen=listen).read_text()))

    assert check(f"unix:{tmp_path}/q.sock").ok is True
    missing = check(f"unix:{tmp_path}/no/such/dir/q.sock")
    assert missing.ok is False and "does not exist" in missing.detail
    (tmp_path / "file.sock").write_text("")
    assert check(f"unix:{tmp_path}/file.sock").ok is False
    assert check("unix:/run/octopus/query.sock").ok is True  # systemd creates its RuntimeDirectory
    assert check(f"127.0.0.1:{free_port()}").ok is True
    with socket.socket() as other:  # a port another program holds: the daemon would not start
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = check(f"127.0.0.1:{other.getsockname()[1]}")
    assert taken.ok is False and "another program" in taken.detail
    assert check("").ok is None


def test_doctor_says_a_running_daemon_holds_its_own_port(daemon):
    from octopus.device.doctor import check_queries

    result = check_queries(daemon.config)
    assert result.ok is True and "running octopus daemon" in result.detail


def test_ask_execute_sends_the_email_and_dry_run_does_not(email_onnx, tmp_path, smtp_server):
    from conftest import EMAIL_QUERY

    server = smtp_server()
    Image.new("RGB", (48, 48), (128, 128, 128)).save(tmp_path / "gray.png")
    config = tmp_path / "config.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n[actions.smtp]\nhost = "127.0.0.1"\n'
                      f'port = {server.port}\nfrom_address = "pi@octopus.test"\nca_file = "{server.ca_file}"\n')
    ask = [*OCTOPUS, "ask", "--model", str(email_onnx), "--image", str(tmp_path / "gray.png"), "--query", EMAIL_QUERY,
           "--config", str(config), "--json"]
    dry = subprocess.run(ask, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    answer = json.loads(dry.stdout)
    assert answer["function"] == "send_email" and answer["arguments"]["recipient"] == "ann@example.com"
    action = answer["action"]
    assert action["dry_run"] and action["status"] == "done"
    assert action["detail"] == "dry run: would email 'ann@example.com' subject 'the bottle'"
    assert server.messages == []
    sent = subprocess.run([*ask, "--execute"], capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stderr
    action = json.loads(sent.stdout)["action"]
    assert action["status"] == "done" and [m["To"] for m in server.messages] == ["ann@example.com"]
    assert server.messages[0]["Message-ID"] == f"<{action['outbox_id']}@octopus.local>"


def test_ask_and_the_daemon_record_the_same_outbox_item(email_onnx, tmp_path, mock_factory):
    """One answer step: the same frame and query give the same outbox record from `octopus ask --config` and
    from a daemon's press, a dry run in both (recorded, checked, nothing sent)."""
    from conftest import EMAIL_QUERY

    (tmp_path / "frames").mkdir()
    Image.new("RGB", (48, 48), (128, 128, 128)).save(tmp_path / "frames" / "frame.png")
    config_path = write_config(tmp_path, email_onnx, extra='[actions]\nallow_recipients = ["@example.com"]\n')
    config_path.write_text(config_path.read_text().replace("max_new_tokens = 12", "max_new_tokens = 64"))
    frame = tmp_path / "frames" / "frame.png"
    ask = subprocess.run([*OCTOPUS, "ask", "--model", str(email_onnx), "--image", str(frame), "--query", EMAIL_QUERY,
                          "--config", str(config_path)], capture_output=True, text=True, timeout=120)
    assert ask.returncode == 0, ask.stderr
    assert ask.stdout.splitlines()[-1] == "dry run: would email 'ann@example.com' subject 'the bottle'"
    d = Daemon(parse_config(config_path.read_text()), pin_factory=mock_factory)
    d.start()
    try:
        d.set_query(EMAIL_QUERY)
        press(mock_factory.pin(17))
        assert wait_for(lambda: len(d.outbox.list("done")) == 2)
        by_source = {i.source: i.to_json() for i in d.outbox.list()}
    finally:
        d.stop()
    assert set(by_source) == {"cli:ask", "button:short"}
    cli_item, daemon_item = by_source["cli:ask"], by_source["button:short"]
    same = ("function", "arguments", "dry_run", "status", "attempts", "result")
    assert {k: cli_item[k] for k in same} == {k: daemon_item[k] for k in same}
    assert cli_item["function"] == "send_email" and cli_item["dry_run"] and cli_item["status"] == "done"


def test_a_button_press_ends_as_an_email_through_the_outbox(email_onnx, tmp_path, smtp_server, mock_factory):
    """The whole path: posted query, button, camera frame, model, outbox, SMTP with STARTTLS."""
    from conftest import EMAIL_QUERY

    server = smtp_server()
    (tmp_path / "frames").mkdir()
    Image.new("RGB", (48, 48), (128, 128, 128)).save(tmp_path / "frames" / "frame.png")
    text = write_config(tmp_path, email_onnx, listen=f"127.0.0.1:{free_port()}", extra=(
        f'[actions]\nexecute = true\n[actions.smtp]\nhost = "127.0.0.1"\nport = {server.port}\n'
        f'from_address = "pi@octopus.test"\nca_file = "{server.ca_file}"\n')).read_text()
    text = text.replace("max_new_tokens = 12", "max_new_tokens = 64")  # the whole call
    d = Daemon(parse_config(text), pin_factory=mock_factory)
    d.start()
    try:
        assert call(d, "POST", "/query", EMAIL_QUERY.encode(), "text/plain")[0] == 202
        press(mock_factory.pin(17))
        assert wait_for(lambda: len(server.messages) == 1), d.status()
        result = d.recent[-1]
        assert result["function"] == "send_email" and result["query"] == EMAIL_QUERY
        assert wait_for(lambda: d.outbox.get(result["outbox_id"]).status == "done")
        assert server.messages[0]["To"] == "ann@example.com"
    finally:
        d.stop()


def test_ask_when_the_outbox_refuses_writes_is_a_507_and_visible_in_status(email_onnx, tmp_path, mock_factory):
    from conftest import EMAIL_QUERY

    (tmp_path / "frames").mkdir()
    Image.new("RGB", (48, 48), (128, 128, 128)).save(tmp_path / "frames" / "frame.png")
    text = write_config(tmp_path, email_onnx, listen=f"127.0.0.1:{free_port()}").read_text()
    d = Daemon(parse_config(text.replace("max_new_tokens = 12", "max_new_tokens = 64")), pin_factory=mock_factory)
    d.start()
    try:
        status, answer = call(d, "POST", "/ask", json.dumps({"query": EMAIL_QUERY}).encode())
        assert status == 200 and answer["function"] == "send_email" and answer["outbox_id"]
        with d.outbox.lock:  # the state directory turns read-only (a full disk takes the same path: OutboxError)
            d.outbox.db.execute("PRAGMA query_only = ON")
        status, answer = call(d, "POST", "/ask", json.dumps({"query": EMAIL_QUERY}).encode())
        assert status == 507 and answer["function"] == "send_email" and "outbox_id" not in answer
        assert "cannot take new work" in answer["error"] and "\n" not in answer["error"]
        report = call(d, "GET", "/status")[1]
        assert "cannot take new work" in report["outbox_problem"] and report["outbox"]["pending"] + \
            report["outbox"]["done"] + report["outbox"]["sending"] == 1
    finally:
        d.stop()


def test_pending_actions_left_by_a_previous_run_are_sent_after_a_restart(tiny_onnx, tmp_path):
    from test_actions_outbox import Webhook

    from octopus.device.outbox import Outbox

    hook = Webhook()
    outbox = Outbox(tmp_path / "state")  # what a killed daemon left behind: written, never sent
    item_id = outbox.enqueue("google_search", {"query": "compost bins"}, source="button:short")
    extra = f'[actions]\nexecute = true\n[actions.webhook]\nurl = "{hook.url}"\n'
    config = write_config(tmp_path, tiny_onnx, extra=extra)
    d = Daemon(parse_config(config.read_text().replace("[button]\n", "[button]\nenabled = false\n")))
    d.start()
    try:
        assert wait_for(lambda: outbox.get(item_id).status == "done")
    finally:
        d.stop()
        hook.close()
    assert [body["link"] for _, body in hook.posts] == ["https://www.google.com/search?q=compost+bins"]


def test_daemon_without_a_usable_button_or_camera_says_why_in_one_line(tiny_onnx, tmp_path):
    config = write_config(tmp_path, tiny_onnx)
    env = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}  # no GPIO on this machine
    out = subprocess.run([*OCTOPUS, "daemon", "--config", str(config)], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "button on GPIO 17" in out.stderr and "enabled = false" in out.stderr
    config.write_text(config.read_text().replace('kind = "file"', 'kind = "v4l2"\ndevice = "/dev/video77"'))
    out = subprocess.run([*OCTOPUS, "daemon", "--config", str(config)], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 2 and "v4l2: no device at /dev/video77" in out.stderr, out.stderr


def test_reject_bias_from_the_device_config_and_from_the_command_line(tiny_onnx, photo, tmp_path):
    """The device config's bias replaces the model's; `ask --reject-bias` replaces the config's."""
    photo.save(tmp_path / "p.jpg")
    (tmp_path / "config.toml").write_text("[model]\nreject_bias = { zh = 50.0 }\n")

    def ask(*extra):
        return subprocess.run([*OCTOPUS, "ask", "--model", str(tiny_onnx), "--image", str(tmp_path / "p.jpg"),
                               "--query", "帮我买这个", "--json", "--config", str(tmp_path / "config.toml"), *extra],
                              capture_output=True, text=True, timeout=120)

    out = ask()
    assert out.returncode == 0 and json.loads(out.stdout)["raw"].startswith("<nexa_none>"), out.stderr
    out = ask("--reject-bias", "zh=-50")
    assert out.returncode == 0 and not json.loads(out.stdout)["raw"].startswith("<nexa_none>"), out.stderr
    out = ask("--reject-bias", "zh=lots")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "not a number" in out.stderr, out.stderr
