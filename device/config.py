"""The device configuration: `/etc/octopus/config.toml` read into typed dataclasses and validated.

Every section is a dataclass; a key the dataclass does not have, a value of the wrong type or out of range
is a `ConfigError` with one line naming the file, the section and the key. Defaults make a dry-run device
that answers but sends nothing. Knows nothing about models, cameras or actions beyond their settings.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from octopus.generation import LANGUAGES, MAX_NEW_TOKENS, MAX_REJECT_BIAS

DEFAULT_CONFIG_PATH = Path("/etc/octopus/config.toml")


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message is one line."""


@dataclass
class ModelSection:
    path: str = "/opt/octopus/model"  # an exported ONNX folder (manifest.json)
    precision: str = "auto"  # auto | fp32 | int8
    threads: int = 0  # onnxruntime intra-op threads; 0: all cores
    max_new_tokens: int = MAX_NEW_TOKENS  # the answer budget, in tokens
    # bias toward "no function" by request language, replacing the model's own for that language
    # (e.g. reject_bias = { zh = 1.0 }: fewer calls for Chinese requests that fit no function)
    reject_bias: dict[str, float] = field(default_factory=dict)


@dataclass
class CameraSection:
    kind: str = "picamera2"  # picamera2 | file | v4l2
    width: int = 640
    height: int = 480
    path: str = ""  # file camera: an image file, or a folder (its newest image is the frame)
    device: str = "/dev/video0"  # v4l2 camera


@dataclass
class ButtonSection:
    enabled: bool = True
    pin: int = 17  # BCM numbering
    pull_up: bool = True
    bounce_ms: int = 50  # presses closer together than this are one press
    hold_s: float = 1.0  # held this long: the "hold" gesture


@dataclass
class QueriesSection:
    short_press: str = "What should I do with this?"
    hold: str = "Order this for me"
    listen: str = "127.0.0.1:8765"  # loopback host:port, or unix:/run/octopus/query.sock; "" turns it off
    pending_ttl_s: float = 300.0  # a posted query waits this long for the next press


@dataclass
class SmtpSection:
    host: str = ""
    port: int = 587
    starttls: bool = True
    username: str = ""
    password_file: str = ""  # a file holding the password
    password_credential: str = ""  # or a systemd credential name (LoadCredential=), read from $CREDENTIALS_DIRECTORY
    from_address: str = ""
    ca_file: str = ""  # trust this CA for STARTTLS (a private relay); default: the system store
    timeout_s: float = 20.0


@dataclass
class HttpSection:
    url: str = ""  # POST JSON here
    token_file: str = ""  # bearer token file
    token_credential: str = ""  # or a systemd credential name
    timeout_s: float = 15.0


@dataclass
class ActionsSection:
    execute: bool = False  # False: dry run, actions are described and recorded but nothing is sent
    allow_recipients: list[str] = field(default_factory=list)  # empty: any recipient
    smtp: SmtpSection = field(default_factory=SmtpSection)
    sms: HttpSection = field(default_factory=HttpSection)  # send_text_message goes to this provider/webhook
    webhook: HttpSection = field(default_factory=HttpSection)  # other functions: their link is POSTed here if set
    links: dict[str, str] = field(default_factory=dict)  # function name -> URL template overriding the default
    allow_handlers: list[str] = field(default_factory=list)  # user functions whose local handler may run


@dataclass
class OutboxSection:
    max_attempts: int = 8
    backoff_s: float = 30.0  # first retry delay; doubles per attempt
    backoff_max_s: float = 3600.0


@dataclass
class DaemonSection:
    state_dir: str = ""  # default: $STATE_DIRECTORY (systemd StateDirectory=), else ~/.local/state/octopus
    max_inference_s: float = 60.0  # a worker busy longer than this is unhealthy (the watchdog stops pinging)
    log_level: str = "info"


@dataclass
class Config:
    model: ModelSection = field(default_factory=ModelSection)
    camera: CameraSection = field(default_factory=CameraSection)
    button: ButtonSection = field(default_factory=ButtonSection)
    queries: QueriesSection = field(default_factory=QueriesSection)
    actions: ActionsSection = field(default_factory=ActionsSection)
    outbox: OutboxSection = field(default_factory=OutboxSection)
    daemon: DaemonSection = field(default_factory=DaemonSection)
    source: str = "<defaults>"

    def state_dir(self) -> Path:
        if self.daemon.state_dir:
            return Path(self.daemon.state_dir)
        if os.environ.get("STATE_DIRECTORY"):
            return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
        if os.environ.get("XDG_STATE_HOME"):
            return Path(os.environ["XDG_STATE_HOME"]) / "octopus"
        return Path.home() / ".local" / "state" / "octopus"


CHOICES = {
    ("model", "precision"): ("auto", "fp32", "int8"),
    ("camera", "kind"): ("picamera2", "file", "v4l2"),
    ("daemon", "log_level"): ("debug", "info", "warning", "error"),
}
POSITIVE = {("model", "max_new_tokens"), ("camera", "width"), ("camera", "height"), ("button", "hold_s"),
            ("outbox", "max_attempts"), ("outbox", "backoff_s"), ("outbox", "backoff_max_s"),
            ("daemon", "max_inference_s"), ("queries", "pending_ttl_s"), ("actions", "smtp", "timeout_s"),
            ("actions", "sms", "timeout_s"), ("actions", "webhook", "timeout_s")}
# upper bounds: a typo (an extra digit or twenty) is an error at load, not a hang or an overflow later
MAXIMUM = {("model", "max_new_tokens"): 1024, ("camera", "width"): 8192, ("camera", "height"): 8192,
           ("outbox", "max_attempts"): 1000}
LARGEST = 2**31 - 1  # any other integer


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _check_value(where: str, value, tp):
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(f"{where} must be a list of {_type_name(item)}, got {value!r}")
        return value
    if origin is dict:
        _, item = typing.get_args(tp)
        if item is float:
            if not isinstance(value, dict):
                raise ConfigError(f"{where} must be a table of numbers, got {value!r}")
            return {k: _check_value(f"{where[:-1]}.{k}'", v, float) for k, v in value.items()}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{where} must be a table of strings, got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > LARGEST:
            raise ConfigError(f"{where} is out of range, got {value}")
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if tp is float and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    if tp is int and abs(value) > LARGEST:
        raise ConfigError(f"{where} is out of range, got {value}")
    return value


def _fill(obj, table: dict, path: tuple[str, ...]):
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj) if f.name != "source"]
    for key, value in table.items():
        where = ".".join((*path, key))
        if key not in names:
            raise ConfigError(f"unknown key '{where}' (known in [{'.'.join(path) or 'top level'}]: "
                              f"{', '.join(names)})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"'{where}' must be a table ([{where}])")
            _fill(getattr(obj, key), value, (*path, key))
            continue
        value = _check_value(f"'{where}'", value, tp)
        choices = CHOICES.get((*path, key))
        if choices and value not in choices:
            raise ConfigError(f"'{where}' must be one of {', '.join(choices)}, got {value!r}")
        if (*path, key) in POSITIVE and value <= 0:
            raise ConfigError(f"'{where}' must be positive, got {value!r}")
        if (*path, key) in MAXIMUM and value > MAXIMUM[(*path, key)]:
            raise ConfigError(f"'{where}' must be at most {MAXIMUM[(*path, key)]}, got {value!r}")
        setattr(obj, key, value)


def check_listen(listen: str) -> None:
    """The query endpoint must be loopback or a Unix socket: it takes requests without authentication."""
    if not listen or listen.startswith("unix:"):
        if listen == "unix:":
            raise ConfigError("'queries.listen' unix: needs a socket path")
        return
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"'queries.listen' must be HOST:PORT or unix:PATH, got {listen!r}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ConfigError(f"'queries.listen' IPv6 addresses go in brackets, e.g. [{host}]:{port}; got {listen!r}")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"'queries.listen' must be a loopback address (it has no authentication), got {host!r}")


def validate(config: Config) -> Config:
    check_listen(config.queries.listen)
    # the function names in actions.links and actions.allow_handlers are checked against the model's function
    # table when the actions are built (octopus.device.actions.Actions): a model may bring user functions
    bad = [name for name in [*config.actions.links, *config.actions.allow_handlers]
           if not re.fullmatch(r"[a-z][a-z0-9_]*", name)]
    if bad:
        raise ConfigError(f"'actions' names {bad[0]!r}, which is not a function name")
    if config.camera.kind == "file" and not config.camera.path:
        raise ConfigError("'camera.path' must be set when camera.kind = \"file\"")
    if config.actions.smtp.password_file and config.actions.smtp.password_credential:
        raise ConfigError("set one of 'actions.smtp.password_file' and 'actions.smtp.password_credential'")
    if not 1 <= config.actions.smtp.port <= 65535:
        raise ConfigError(f"'actions.smtp.port' must be a port from 1 to 65535, got {config.actions.smtp.port}")
    if not 0 <= config.button.pin <= 27:
        raise ConfigError(f"'button.pin' must be a BCM GPIO number from 0 to 27, got {config.button.pin}")
    if config.button.bounce_ms < 0:
        raise ConfigError(f"'button.bounce_ms' must be 0 or more, got {config.button.bounce_ms}")
    for language, bias in config.model.reject_bias.items():
        if language not in LANGUAGES:
            raise ConfigError(f"'model.reject_bias' takes the languages {', '.join(LANGUAGES)}, got {language!r}")
        if abs(bias) > MAX_REJECT_BIAS:
            raise ConfigError(f"'model.reject_bias.{language}' must be between -{MAX_REJECT_BIAS:g} and "
                              f"{MAX_REJECT_BIAS:g}, got {bias}")
    if not 0 <= config.model.threads <= 256:
        raise ConfigError(f"'model.threads' must be between 0 and 256, got {config.model.threads}")
    return config


def parse_config(text: str, source: str = "<string>") -> Config:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    config = Config(source=source)
    try:
        _fill(config, table, ())
        return validate(config)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | Path | None, required: bool = False) -> Config:
    """Read a config file; with `required=False` a missing default file gives the dry-run defaults."""
    path = Path(path) if path else DEFAULT_CONFIG_PATH
    if not path.is_file():
        if required or path != DEFAULT_CONFIG_PATH:
            raise ConfigError(f"no config file at {path}")
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({type(exc).__name__})") from None
    return parse_config(text, str(path))


def shown_path(value: str) -> str:
    """A configured secret *path* as it may be printed: the path when its folder exists, else a placeholder (a
    password pasted where a path belongs must never reach a log or a terminal)."""
    path = Path(value)
    if value and len(value) < 512 and path.is_absolute() and path.parent.is_dir():
        return value
    return "(the configured value, not shown: it is not a path in an existing folder; did you paste the secret " \
           "itself instead of the path of a file holding it?)"


def redact_url(url: str) -> str:
    """`scheme://user:password@host/...` -> `scheme://***@host/...`; query parameters named like secrets are
    masked too (`?token=...`)."""
    url = re.sub(r"^([a-zA-Z][\w+.-]*://)[^/@]*@", r"\1***@", url)
    return re.sub(r"([?&](?:token|key|api_key|apikey|password|secret|sig|signature)=)[^&#]*", r"\1***", url,
                  flags=re.IGNORECASE)


def secret_file_warning(file: str) -> str | None:
    """A warning when a secret file can be read by users other than its owner."""
    try:
        mode = Path(file).stat().st_mode
    except OSError:
        return None
    if mode & 0o077:
        return f"{file} is readable by others (mode {oct(mode & 0o777)}): chmod 600 it"
    return None


def read_secret(file: str, credential: str, what: str) -> str:
    """A secret from a file or a systemd credential; '' when neither is configured. Errors never show the
    secret, nor a configured value that is not a path."""
    if credential:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(f"{what}: a credential is set but $CREDENTIALS_DIRECTORY is not "
                              "(use LoadCredential= in the unit)")
        if "/" in credential or len(credential) > 255:
            raise ConfigError(f"{what}: the credential name is not a name (value not shown)")
        file = str(Path(directory) / credential)
        # a credential's name is shown nowhere either: a secret pasted in its place would be a valid name
        shown = "the credential in $CREDENTIALS_DIRECTORY (name not shown: is it the name given to LoadCredential=, " \
                "not the secret itself?)"
    elif not file:
        return ""
    else:
        shown = shown_path(file)
    try:
        return Path(file).read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: {shown} is not UTF-8 text") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what}: cannot read {shown} ({getattr(exc, 'strerror', None) or 'bad path'})") from None
