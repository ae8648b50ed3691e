"""`octopus doctor`: is this device ready? Config, model files, camera, GPIO, outbox, SMTP.

Each check returns ok (True), a failure (False) with the reason in one line, or skip (None) when the
config does not use that part. Nothing is sent: SMTP is checked up to STARTTLS and login, then QUIT.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from dataclasses import dataclass
from pathlib import Path

from octopus.bundle import Manifest, ManifestError
from octopus.device.actions import Actions, model_registry
from octopus.device.camera import CameraError, open_camera
from octopus.device.config import Config, ConfigError, read_secret, secret_file_warning
from octopus.device.outbox import QUARANTINE, STATUSES, inspect, status_counts


@dataclass
class Check:
    name: str
    ok: bool | None
    detail: str


def check_model(config: Config) -> Check:
    """Every file the runtime reads (graphs of each precision, embedding table, tokenizer) against the
    manifest's sha256s."""
    directory = Path(config.model.path)
    try:
        checked = Manifest.load(directory).verify()
    except ManifestError as exc:
        return Check("model", False, str(exc))
    return Check("model", True, f"{directory}: {len(checked)} files match the manifest "
                               f"({', '.join(sorted({c.split('/')[0] for c in checked}))})")


def check_functions(config: Config) -> Check:
    """The model's function table (the ten and any user functions) against the config's actions section."""
    try:
        registry = model_registry(config.model.path)
        Actions(config.actions, registry)
    except ConfigError as exc:
        return Check("functions", False, str(exc))
    user = [f.name + (f" ({next(iter(f.action))})" if f.action else "") for f in registry.user_functions]
    return Check("functions", True, f"{len(registry)} functions" + (f"; user: {', '.join(user)}" if user else ""))


def check_camera(config: Config) -> Check:
    try:
        camera = open_camera(config.camera)
        try:
            frame = camera.capture()
        finally:
            camera.close()
    except CameraError as exc:
        return Check("camera", False, str(exc))
    return Check("camera", True, f"{config.camera.kind}: a {frame.width}×{frame.height} frame")


def check_gpio(config: Config) -> Check:
    if not config.button.enabled:
        return Check("gpio", None, "button disabled")
    try:
        from gpiozero import Button

        button = Button(config.button.pin, pull_up=config.button.pull_up)
        state = "pressed" if button.is_pressed else "released"
        factory = type(button.pin_factory).__name__
        button.close()
    except Exception as exc:  # gpiozero raises many kinds (BadPinFactory, GPIOPinInUse, PermissionError)
        return Check("gpio", False, f"pin {config.button.pin}: {type(exc).__name__}: {exc}".splitlines()[0])
    return Check("gpio", True, f"pin {config.button.pin} ({factory}): {state}")


def check_outbox(config: Config) -> Check:
    """Read-only: PRAGMA quick_check, items by status, and any database moved aside as damaged."""
    import sqlite3

    state = config.state_dir()
    problem = inspect(state)
    if problem is not None:
        return Check("outbox", False, f"{state}: {problem} (the daemon moves it aside and recovers what it can "
                                      "at its next start)")
    counts = dict.fromkeys(STATUSES, 0)
    if (state / "outbox.sqlite3").exists():
        try:
            db = sqlite3.connect(f"file:{state / 'outbox.sqlite3'}?mode=ro", uri=True, timeout=5)
            counts = status_counts(db)
            db.close()
        except sqlite3.Error as exc:
            return Check("outbox", False, f"{state}: {exc}")
    aside = sorted(p.name for p in state.glob(QUARANTINE + "*") if not p.name.endswith(("-wal", "-shm")))
    ok = counts["failed"] == 0 and not aside
    hint = ""
    if counts["failed"]:
        hint += " (see `octopus outbox list --status failed`, then `octopus outbox retry`)"
    if aside:
        hint += f"; {len(aside)} damaged database(s) moved aside: {', '.join(aside)} (its readable items were " \
                "recovered; delete it once checked)"
    return Check("outbox", ok, f"{state}: {counts['pending']} pending, {counts['failed']} failed{hint}")


RUNTIME_DIRECTORY = Path("/run/octopus")  # the unit's RuntimeDirectory=octopus: systemd creates it at start


def check_queries(config: Config) -> Check:
    """Can the query endpoint be opened where the config says? A Unix socket needs a writable directory; a TCP
    port must be free or already answered by an octopus daemon."""
    import errno
    import os
    import socket
    import urllib.request

    listen = config.queries.listen
    if not listen:
        return Check("queries", None, "queries.listen is empty: no query endpoint")
    if listen.startswith("unix:"):
        path = Path(listen[len("unix:"):])
        parent = path.parent
        if not parent.exists():
            if parent == RUNTIME_DIRECTORY:
                return Check("queries", True, f"{listen}: {parent} is created by systemd (RuntimeDirectory=octopus) "
                                              "when the service starts")
            return Check("queries", False, f"{listen}: the directory {parent} does not exist (create it, or use "
                                           f"unix:{RUNTIME_DIRECTORY}/query.sock under the service)")
        if not parent.is_dir():
            return Check("queries", False, f"{listen}: {parent} is not a directory")
        if path.exists() and not path.is_socket():
            return Check("queries", False, f"{listen}: {path} exists and is not a socket (the daemon would not "
                                           "replace a regular file)")
        if not os.access(parent, os.W_OK | os.X_OK):
            return Check("queries", False, f"{listen}: {parent} is not writable by this user")
        return Check("queries", True, f"{listen}: the socket can be created")
    host, _, port = listen.rpartition(":")
    family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.bind((host.strip("[]"), int(port)))
            return Check("queries", True, f"{listen}: free")
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return Check("queries", False, f"{listen}: cannot listen there ({exc.strerror or exc})")
    try:  # in use: by a running daemon (fine) or by another program (the daemon would fail to start)
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=3) as response:
            known = "healthy" in json.loads(response.read())
    except urllib.error.HTTPError as exc:  # 503: a daemon that is unhealthy still answers in its own format
        try:
            known = "healthy" in json.loads(exc.read())
        except ValueError:
            known = False
    except (OSError, ValueError):
        known = False
    if known:
        return Check("queries", True, f"{listen}: in use by a running octopus daemon")
    return Check("queries", False, f"{listen}: the port is in use by another program")


def check_smtp(config: Config) -> Check:
    smtp = config.actions.smtp
    if not smtp.host:
        return Check("smtp", None, "no actions.smtp.host")
    try:
        password = read_secret(smtp.password_file, smtp.password_credential, "smtp")
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
            client.ehlo()
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context(cafile=smtp.ca_file or None))
                client.ehlo()
            if smtp.username:
                client.login(smtp.username, password)
    except UnicodeEncodeError:
        return Check("smtp", False, f"{smtp.host}:{smtp.port}: the password has non-ASCII characters, which SMTP "
                                    "AUTH cannot send")
    except (ConfigError, smtplib.SMTPException, OSError) as exc:
        return Check("smtp", False, f"{smtp.host}:{smtp.port}: {type(exc).__name__}: {exc}".splitlines()[0])
    warning = secret_file_warning(smtp.password_file) if smtp.password_file else None
    if warning:
        return Check("smtp", False, f"{smtp.host}:{smtp.port} reachable, but the password file {warning}")
    return Check("smtp", True, f"{smtp.host}:{smtp.port} reachable{', STARTTLS' if smtp.starttls else ''}"
                               f"{', login ok' if smtp.username else ''}")


def run_checks(config: Config, smtp: bool = True) -> list[Check]:
    mode = "executes actions" if config.actions.execute else "dry run"
    checks = [Check("config", True, f"{config.source} ({mode})"), check_model(config), check_functions(config),
              check_camera(config),
              check_gpio(config), check_queries(config), check_outbox(config)]
    checks.append(check_smtp(config) if smtp else Check("smtp", None, "--no-network"))
    return checks
