"""Actions and the persistent outbox against real servers: SMTP with STARTTLS (aiosmtpd), an HTTP webhook,
an outage, and a sender killed with SIGKILL in the middle of a send."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from octopus.device.actions import Actions, link_for, recipient_allowed
from octopus.device.config import parse_config
from octopus.device.outbox import Outbox

OCTOPUS = [sys.executable, "-m", "octopus.cli"]


def smtp_config(state: Path, server, extra: str = "", port: int | None = None) -> str:
    return (f'[daemon]\nstate_dir = "{state}"\n[outbox]\nbackoff_s = 0.2\n[actions]\nexecute = true\n{extra}\n'
            f'[actions.smtp]\nhost = "127.0.0.1"\nport = {port or server.port}\nfrom_address = "pi@octopus.test"\n'
            f'ca_file = "{server.ca_file}"\ntimeout_s = 5\n')


def deliver(outbox: Outbox, actions: Actions):
    return outbox.deliver_due(lambda item: actions.perform(item.function, item.arguments, item.id, item.dry_run))


def email(to="ann@example.com"):
    return "send_email", {"recipient": to, "subject": "Hello from the Pi", "body": "The bottle is recyclable."}


def test_email_goes_over_starttls_with_a_credential_login(smtp_server, tmp_path, monkeypatch):
    server = smtp_server(password="s3cret")
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "smtp_password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    config = parse_config(smtp_config(tmp_path / "state", server) +
                          'username = "octopus"\npassword_credential = "smtp_password"\n')
    outbox = Outbox(config.state_dir())
    item_id = outbox.enqueue(*email(), source="test")
    [item] = deliver(outbox, Actions(config.actions))
    assert item.status == "done", item.result
    [message] = server.messages
    assert message["To"] == "ann@example.com" and message["Subject"] == "Hello from the Pi"
    assert message["Message-ID"] == f"<{item_id}@octopus.local>"  # the idempotency key a receiver can use
    assert "recyclable" in message.get_payload()
    assert outbox.counts() == {"pending": 0, "sending": 0, "done": 1, "failed": 0}


def test_a_wrong_password_fails_for_good_and_sends_nothing(smtp_server, tmp_path):
    server = smtp_server(password="right")
    (tmp_path / "pw").write_text("wrong")
    config = parse_config(smtp_config(tmp_path / "state", server) +
                          f'username = "octopus"\npassword_file = "{tmp_path / "pw"}"\n')
    outbox = Outbox(config.state_dir())
    outbox.enqueue(*email())
    [item] = deliver(outbox, Actions(config.actions))
    assert item.status == "failed" and "login refused" in item.result
    assert server.messages == []


def test_no_starttls_means_no_send_rather_than_plain_text(smtp_server, tmp_path):
    server = smtp_server(require_tls=False)  # this server offers no STARTTLS at all
    config = parse_config(smtp_config(tmp_path / "state", server))
    outbox = Outbox(config.state_dir())
    outbox.enqueue(*email())
    [item] = deliver(outbox, Actions(config.actions))
    assert item.status == "failed" and "STARTTLS" in item.result
    assert server.messages == []


def test_an_smtp_outage_keeps_the_email_and_sends_it_once_when_the_server_is_back(smtp_server, tmp_path):
    from conftest import free_port

    port = free_port()  # nothing listens here yet
    config = parse_config(smtp_config(tmp_path / "state", smtp_server, port=port))
    outbox, actions = Outbox(config.state_dir(), backoff_s=0.2), Actions(config.actions)
    item_id = outbox.enqueue(*email())
    [item] = deliver(outbox, actions)
    assert item.status == "pending" and "unavailable" in item.result
    assert deliver(outbox, actions) == []  # backing off: not due yet
    server = smtp_server(port=port)
    time.sleep(0.25)
    [item] = deliver(outbox, actions)
    assert item.status == "done" and item.attempts == 2
    assert [m["Message-ID"] for m in server.messages] == [f"<{item_id}@octopus.local>"]
    assert deliver(outbox, actions) == []


def test_recipient_allowlist(smtp_server, tmp_path):
    assert recipient_allowed("Ann@Example.com", ["ann@example.com"])
    assert recipient_allowed("bob@family.org", ["@family.org"])
    assert recipient_allowed("+1 (555) 010-2000", ["+15550102000"])
    assert not recipient_allowed("eve@evil.com", ["@family.org", "ann@example.com"])
    server = smtp_server()
    config = parse_config(smtp_config(tmp_path / "state", server, 'allow_recipients = ["@family.org"]'))
    outbox = Outbox(config.state_dir())
    outbox.enqueue(*email("eve@evil.com"))
    outbox.enqueue(*email("mum@family.org"))
    items = deliver(outbox, Actions(config.actions))
    assert [i.status for i in items] == ["failed", "done"]
    assert "allow_recipients" in items[0].result
    assert [m["To"] for m in server.messages] == ["mum@family.org"]


def test_dry_run_records_but_sends_nothing(smtp_server, tmp_path):
    server = smtp_server()
    config = parse_config(smtp_config(tmp_path / "state", server).replace("execute = true", "execute = false"))
    outbox = Outbox(config.state_dir())
    outbox.enqueue(*email(), dry_run=not config.actions.execute)
    [item] = deliver(outbox, Actions(config.actions))
    assert item.status == "done" and item.result.startswith("dry run: would email 'ann@example.com'")
    assert server.messages == []


class Webhook:
    """A loopback HTTP server that records JSON posts and answers with scripted status codes."""

    def __init__(self, statuses=()):
        self.posts, self.statuses = [], list(statuses)
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.posts.append((dict(self.headers), body))
                self.send_response(hook.statuses.pop(0) if hook.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_text_message_goes_to_the_sms_webhook_with_retry_on_5xx_and_no_retry_on_4xx(tmp_path):
    hook = Webhook(statuses=[503, 200, 400])
    (tmp_path / "token").write_text("tok-123\n")
    config = parse_config(f'[actions]\nexecute = true\n[actions.sms]\nurl = "{hook.url}"\n'
                          f'token_file = "{tmp_path / "token"}"\n')
    outbox, actions = Outbox(tmp_path / "state", backoff_s=0.01), Actions(config.actions)
    first = outbox.enqueue("send_text_message", {"recipient": "Mum", "message": "在路上了"})
    assert deliver(outbox, actions)[0].status == "pending"  # 503: try again
    time.sleep(0.05)
    assert deliver(outbox, actions)[0].status == "done"
    outbox.enqueue("send_text_message", {"recipient": "Dad", "message": "hi"})
    assert deliver(outbox, actions)[0].status == "failed"  # 400: our request is wrong, retrying cannot help
    headers, body = hook.posts[1]
    assert body == {"to": "Mum", "message": "在路上了", "id": first}
    assert headers["Idempotency-Key"] == first and headers["Authorization"] == "Bearer tok-123"
    assert hook.posts[0][1] == hook.posts[1][1]  # the retry is the same request
    hook.close()


def test_other_functions_become_links_posted_to_the_webhook(tmp_path):
    assert link_for("amazon_shopping", {"product": "water bottle", "quantity": 2}) == \
        "https://www.amazon.com/s?k=water+bottle"
    assert link_for("smart_recycling", {"item": "can"}) == "https://www.google.com/search?q=how+to+recycle+can"
    assert link_for("google_search", {"query": "猫粮"}, {"google_search": "https://duckduckgo.com/?q={query}"}) == \
        "https://duckduckgo.com/?q=%E7%8C%AB%E7%B2%AE"
    hook = Webhook()
    config = parse_config(f'[actions]\nexecute = true\n[actions.webhook]\nurl = "{hook.url}"\n')
    outbox = Outbox(tmp_path / "state")
    outbox.enqueue("pet_care", {"pet": "dog", "service": "grooming"})
    [item] = deliver(outbox, Actions(config.actions))
    assert item.status == "done"
    assert hook.posts[0][1]["link"] == "https://www.google.com/maps/search/grooming+dog"
    assert hook.posts[0][1]["function"] == "pet_care"
    hook.close()


def test_user_functions_do_what_their_file_declares(tmp_path):
    """A model's own functions: a webhook of their own, a link template, or no action (the device's webhook);
    config names of functions the model lacks are one-line errors."""
    from octopus.device.config import ConfigError
    from octopus.functions import BUILTIN, Argument, Function

    hook, own = Webhook(), Webhook()
    room = Argument("room", "string", "The room.", "房间。")
    registry = BUILTIN.extended([
        Function("lamp_control", "Lamp on or off.", "开关灯。", (room,), action={"webhook": own.url}),
        Function("find_room", "Show a room.", "显示房间。", (room,), action={"link": "https://home.example/{room}"}),
        Function("vacuum", "Vacuum a room.", "打扫房间。", (room,))])
    config = parse_config(f'[actions]\nexecute = true\n[actions.webhook]\nurl = "{hook.url}"\n')
    actions = Actions(config.actions, registry)
    outbox = Outbox(tmp_path / "state")
    for name in ("lamp_control", "find_room", "vacuum"):
        outbox.enqueue(name, {"room": "living room"})
    items = {i.function: i for i in deliver(outbox, actions)}
    assert all(i.status == "done" for i in items.values()), [i.result for i in items.values()]
    assert own.posts[0][1] == {"function": "lamp_control", "arguments": {"room": "living room"},
                               "id": items["lamp_control"].id}
    assert [p[1]["function"] for p in hook.posts] == ["find_room", "vacuum"]
    assert hook.posts[0][1]["link"] == "https://home.example/living+room"
    assert actions.describe("lamp_control", {"room": "hall"}).endswith(f"POST to {own.url}")
    outbox.enqueue("garage_door", {"open": "yes"})  # queued by a model that had it, before this one
    [orphan] = deliver(outbox, actions)
    assert orphan.status == "failed" and "no function 'garage_door'" in orphan.result
    with pytest.raises(ConfigError, match="unknown function.*garage_door.*lamp_control"):
        Actions(parse_config('[actions.links]\ngarage_door = "https://x/{q}"\n').actions, registry)
    with pytest.raises(ConfigError, match="vacuum, which the model has no handler for"):
        Actions(parse_config('[actions]\nallow_handlers = ["vacuum"]\n').actions, registry)
    hook.close()
    own.close()


def test_a_sender_killed_mid_send_loses_nothing_and_sends_nothing_twice(smtp_server, tmp_path):
    """SIGKILL while the SMTP server holds the first email at RCPT; a second sender finishes the job."""
    stall = threading.Event()
    server = smtp_server(stall_rcpt=stall)
    state = tmp_path / "state"
    (tmp_path / "config.toml").write_text(smtp_config(state, server))
    outbox = Outbox(state)
    ids = [outbox.enqueue(*email(f"user{i}@example.com")) for i in range(3)]
    first = subprocess.Popen([*OCTOPUS, "outbox", "retry", "--config", str(tmp_path / "config.toml")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert server.rcpt_seen.wait(60), "the sender never reached the SMTP server"
    assert outbox.get(ids[0]).status == "sending"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    stall.set()
    assert [outbox.get(i).status for i in ids] == ["sending", "pending", "pending"]  # nothing lost
    second = subprocess.run([*OCTOPUS, "outbox", "retry", "--config", str(tmp_path / "config.toml")],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert [outbox.get(i).status for i in ids] == ["done"] * 3
    received = sorted(m["Message-ID"] for m in server.messages)
    assert received == sorted(f"<{i}@octopus.local>" for i in ids)  # each exactly once
    listing = subprocess.run([*OCTOPUS, "outbox", "list", "--json", "--config", str(tmp_path / "config.toml")],
                             capture_output=True, text=True)
    assert [i["attempts"] for i in json.loads(listing.stdout)] == [2, 1, 1]


def test_two_outboxes_on_one_file_never_claim_the_same_item(tmp_path):
    a, b = Outbox(tmp_path), Outbox(tmp_path)
    for i in range(50):
        a.enqueue("google_search", {"query": f"q{i}"})
    claimed = []

    def drain(box):
        while (item := box.claim()) is not None:
            claimed.append(item.id)
            box.mark_done(item.id, "ok")

    threads = [threading.Thread(target=drain, args=(box,)) for box in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 50 == len(set(claimed))


@pytest.mark.parametrize("argv", [["outbox", "retry", "nope"], ["outbox", "list", "--config", "/nonexistent.toml"]])
def test_outbox_cli_errors_are_one_line(tmp_path, argv):
    (tmp_path / "c.toml").write_text(f'[daemon]\nstate_dir = "{tmp_path}"\n')
    if "--config" not in argv:
        argv = [*argv, "--config", str(tmp_path / "c.toml")]
    out = subprocess.run([*OCTOPUS, *argv], capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr


PASTED = "hunter2-Pa55/word"


@pytest.mark.parametrize("key", ["password_file", "password_credential"])
def test_a_password_pasted_instead_of_a_path_is_never_printed(smtp_server, tmp_path, monkeypatch, key):
    server = smtp_server(password="right")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    (tmp_path / "creds").mkdir()
    config_file = tmp_path / "octopus.toml"
    config_file.write_text(smtp_config(tmp_path / "state", server) + f'username = "octopus"\n{key} = "{PASTED}"\n')
    config = parse_config(config_file.read_text())
    outbox = Outbox(config.state_dir())
    outbox.enqueue(*email(), source="test")
    [item] = deliver(outbox, Actions(config.actions))
    assert item.status == "failed" and PASTED not in item.result and "hunter2" not in item.result
    for argv in (["outbox", "--config", str(config_file), "list"], ["doctor", "--config", str(config_file)]):
        result = subprocess.run(OCTOPUS + argv, capture_output=True, text=True)
        assert "hunter2" not in result.stdout + result.stderr, argv
        assert "Traceback" not in result.stderr


def test_secret_files_latin1_non_ascii_and_world_readable(smtp_server, tmp_path):
    server = smtp_server(password="right")
    latin1 = tmp_path / "latin1"
    latin1.write_bytes("pässword".encode("latin-1"))
    non_ascii = tmp_path / "nonascii"
    non_ascii.write_text("pässword")
    for file, expect in ((latin1, "not UTF-8"), (non_ascii, "non-ASCII")):
        file.chmod(0o600)
        config_file = tmp_path / "octopus.toml"
        config_file.write_text(smtp_config(tmp_path / "state", server) +
                               f'username = "octopus"\npassword_file = "{file}"\n')
        result = subprocess.run(OCTOPUS + ["doctor", "--config", str(config_file)], capture_output=True, text=True)
        assert expect in result.stdout + result.stderr and "Traceback" not in result.stderr, result.stdout
        assert "ä" not in result.stdout + result.stderr
        config = parse_config(config_file.read_text())
        outbox = Outbox(config.state_dir())
        outbox.enqueue(*email(), source="test")
        items = deliver(outbox, Actions(config.actions))
        assert items[-1].status == "failed" and expect in items[-1].result  # not retried forever
    readable = tmp_path / "readable"
    readable.write_text("right")
    readable.chmod(0o644)
    config_file.write_text(smtp_config(tmp_path / "state", server) +
                           f'username = "octopus"\npassword_file = "{readable}"\n')
    result = subprocess.run(OCTOPUS + ["doctor", "--config", str(config_file)], capture_output=True, text=True)
    assert "readable by others" in result.stdout and "chmod 600" in result.stdout


def test_credentials_in_a_webhook_url_are_never_printed(tmp_path):
    from octopus.device.config import redact_url

    assert redact_url("https://bob:s3cr3t@hooks.example.com/x?token=abc&a=1") == \
        "https://***@hooks.example.com/x?token=***&a=1"
    config = parse_config(f'[daemon]\nstate_dir = "{tmp_path}"\n[actions]\nexecute = true\n'
                          '[actions.webhook]\nurl = "http://bob:s3cr3t@127.0.0.1:9/hook?key=k3y"\ntimeout_s = 1\n')
    outbox = Outbox(config.state_dir())
    outbox.enqueue("google_search", {"query": "octopus"}, source="test")
    [item] = deliver(outbox, Actions(config.actions))
    assert "cannot reach" in item.result and "s3cr3t" not in item.result and "k3y" not in item.result
