"""What a validated call does: one executor per function, dry-run unless the config says execute.

`send_email` goes over SMTP (STARTTLS unless turned off; never silently downgraded), `send_text_message`
to an SMS provider or webhook as JSON, every other function becomes a deep link / search URL that is
POSTed to the configured webhook (a phone, Home Assistant, ntfy, ...) or just recorded when none is set.
A user function (from the model's function table) does what its declared action says: a link like those, a
POST of the call to its own webhook URL, or a local handler run without a shell, and only when the config
lists it in `actions.allow_handlers`; without an action its call goes to the configured webhook, if any.
Each send carries the outbox id as its idempotency key (the email's Message-ID, the HTTP
`Idempotency-Key` header) so a receiver can drop the rare duplicate after a crash between "sent" and
"marked done". Executors raise `ActionFailed(retryable=...)`; the outbox decides when to try again.
This module knows the call's function and arguments, nothing about models or cameras.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from octopus.bundle import Manifest, ManifestError
from octopus.device.config import ActionsSection, ConfigError, HttpSection, read_secret, redact_url
from octopus.functions import BUILTIN, Registry

DEFAULT_LINKS = {
    "google_search": "https://www.google.com/search?q={query}",
    "amazon_shopping": "https://www.amazon.com/s?k={product}",
    "smart_recycling": "https://www.google.com/search?q=how+to+recycle+{material}+{item}",
    "lost_and_found": "https://www.google.com/search?q=lost+and+found+{item}+{location}",
    "interior_design": "https://www.pinterest.com/search/pins/?q={style}+{item}+interior+design",
    "instacart_shopping": "https://www.instacart.com/store/s?k={item}",
    "doordash_delivery": "https://www.doordash.com/search/store/{dish}/",
    "pet_care": "https://www.google.com/maps/search/{service}+{pet}",
}
RECIPIENT_ARGUMENT = {"send_email": "recipient", "send_text_message": "recipient"}
USER_AGENT = "octopus-agent"
SUBJECT_MAX, SMS_MAX, LINK_MAX = 200, 480, 2000  # one header line; three SMS segments; what browsers take
HANDLER_TIMEOUT_S = 30.0
EX_TEMPFAIL = 75  # a handler exiting with this (sysexits.h) is tried again later; any other failure is final


class ActionFailed(Exception):
    """An action that did not happen; `retryable` says whether trying later can help."""

    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


def _normalise_recipient(value: str) -> str:
    value = value.strip().lower()
    return re.sub(r"[\s\-().]", "", value) if re.fullmatch(r"[+\d\s\-().]+", value) else value


def recipient_allowed(recipient: str, allowlist: list[str]) -> bool:
    """Empty list: anyone. Entries are exact addresses/numbers/names, or '@domain' for a whole domain."""
    if not allowlist:
        return True
    who = _normalise_recipient(recipient)
    for entry in allowlist:
        entry = _normalise_recipient(entry)
        if who == entry or (entry.startswith("@") and who.endswith(entry)):
            return True
    return False


def model_registry(path: str | Path) -> Registry:
    """The function table of the model at `path` (an exported folder's manifest, or a torch agent's config);
    the ten when there is no model there yet. Raises ConfigError when the model's table cannot be read."""
    path = Path(path)
    try:
        if (path / "manifest.json").is_file():
            return Manifest.load(path).registry()
        if (path / "config.json").is_file():
            return Registry.with_user_functions(json.loads((path / "config.json").read_text()).get("functions", []))
    except (ManifestError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the function table of {path} ({exc})") from None
    return BUILTIN


def link_for(function: str, arguments: dict, templates: dict[str, str] | None = None) -> str:
    template = (templates or {}).get(function) or DEFAULT_LINKS[function]
    values = {k: urllib.parse.quote_plus(str(v)) for k, v in arguments.items()}
    link = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), ""), template)
    return re.sub(r"\+{2,}", "+", link).replace("=+", "=").replace("/+", "/")


def post_json(section: HttpSection, payload: dict, key: str, what: str) -> str:
    """POST JSON; 2xx is done, 408/429/5xx and network errors are retryable, other 4xx are not."""
    try:
        token = read_secret(section.token_file, section.token_credential, what)
    except ConfigError as exc:
        raise ActionFailed(str(exc), retryable=False) from None
    headers = {"Content-Type": "application/json", "Idempotency-Key": key, "User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(section.url, json.dumps(payload, ensure_ascii=False).encode(), headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=section.timeout_s) as response:
            return f"{what}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        retryable = exc.code in (408, 425, 429) or exc.code >= 500
        raise ActionFailed(f"{what}: HTTP {exc.code} {exc.reason}", retryable) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ActionFailed(f"{what}: cannot reach {redact_url(section.url)} ({reason})", retryable=True) from None


class Actions:
    """Describes and performs calls according to the `[actions]` config section and the model's function table
    (`registry`: the ten and the user functions with their declared actions)."""

    def __init__(self, section: ActionsSection, registry: Registry = BUILTIN):
        self.section, self.registry = section, registry
        unknown = sorted(set(section.links) - set(registry.names()))
        if unknown:
            raise ConfigError(f"'actions.links' has unknown function(s) {', '.join(unknown)} (the model calls "
                              f"{', '.join(registry.names())})")
        unknown = sorted(set(section.allow_handlers) - {f.name for f in registry.user_functions
                                                        if f.action and "handler" in f.action})
        if unknown:
            raise ConfigError(f"'actions.allow_handlers' names {', '.join(unknown)}, which the model has no "
                              "handler for")
        # link templates (a user function's declared link, the config's overrides) serve like the built-in ones;
        # every other user function has (kind, value): ("webhook", url), ("handler", argv) or ("none", None)
        self.templates = {f.name: f.action["link"] for f in registry.user_functions if f.action and "link" in f.action}
        self.templates.update(section.links)
        self.user_actions = {f.name: next(iter(f.action.items())) if f.action else ("none", None)
                             for f in registry.user_functions if f.name not in self.templates}

    def _user_action(self, function: str) -> tuple[str, object] | None:
        """A user function's non-link action; None for a function that is a link or one of the ten."""
        if function not in self.registry.names():  # queued by another model (the model was replaced since)
            raise ActionFailed(f"the model has no function {function!r}", retryable=False)
        return self.user_actions.get(function)

    def _link(self, function: str, arguments: dict) -> str:
        return link_for(function, arguments, self.templates)

    def describe(self, function: str, arguments: dict) -> str:
        if function == "send_email":
            return f"email {arguments.get('recipient')!r} subject {arguments.get('subject')!r}"
        if function == "send_text_message":
            return f"text {arguments.get('recipient')!r}: {arguments.get('message')!r}"
        user = self._user_action(function)
        if user is not None:
            call = f"{function}({json.dumps(arguments, ensure_ascii=False)})"
            if user[0] == "webhook":
                return f"{call}: POST to {redact_url(str(user[1]))}"
            if user[0] == "handler":
                return f"{call}: run {' '.join(handler_argv(user[1], arguments))}"
            return f"{call}: " + ("POST to the webhook" if self.section.webhook.url else "recorded (no action)")
        return f"{function}: {self._link(function, arguments)}"

    def check(self, function: str, arguments: dict) -> None:
        """Refuse what the receiving end would refuse or should never get, before anything is sent (and in dry
        runs, which is how stage-3 training gets the environment's verdict): a recipient not on the allow-list,
        an email subject that is not one line of at most SUBJECT_MAX characters, a text message longer than
        SMS_MAX, a link longer than LINK_MAX."""
        name = RECIPIENT_ARGUMENT.get(function)
        if name and not recipient_allowed(str(arguments.get(name, "")), self.section.allow_recipients):
            raise ActionFailed(f"recipient {arguments.get(name)!r} is not on actions.allow_recipients",
                               retryable=False)
        if function == "send_email":
            subject = str(arguments.get("subject", ""))
            if "\n" in subject or "\r" in subject or len(subject) > SUBJECT_MAX:
                raise ActionFailed(f"email subject must be one line of at most {SUBJECT_MAX} characters",
                                   retryable=False)
        elif function == "send_text_message":
            if len(str(arguments.get("message", ""))) > SMS_MAX:
                raise ActionFailed(f"text message longer than {SMS_MAX} characters", retryable=False)
        elif (user := self._user_action(function)) is not None:
            if user[0] == "handler" and function not in self.section.allow_handlers:
                raise ActionFailed(f"{function}: its handler runs only when actions.allow_handlers lists it",
                                   retryable=False)
        elif len(self._link(function, arguments)) > LINK_MAX:
            raise ActionFailed(f"{function}: link longer than {LINK_MAX} characters", retryable=False)

    def perform(self, function: str, arguments: dict, key: str, dry_run: bool) -> str:
        """Run one call (or, dry, say what it would do). Returns a one-line result; raises ActionFailed."""
        self.check(function, arguments)
        if dry_run:
            return "dry run: would " + self.describe(function, arguments)
        if function == "send_email":
            return self.send_email(arguments, key)
        if function == "send_text_message":
            if not self.section.sms.url:
                raise ActionFailed("actions.sms.url is not set", retryable=False)
            payload = {"to": arguments["recipient"], "message": arguments["message"], "id": key}
            return post_json(self.section.sms, payload, key, "sms")
        user = self._user_action(function)
        if user is not None:
            payload = {"function": function, "arguments": arguments, "id": key}
            if user[0] == "webhook":
                return post_json(HttpSection(url=str(user[1]), timeout_s=self.section.webhook.timeout_s), payload,
                                 key, function)
            if user[0] == "handler":
                return run_handler(function, user[1], arguments, key)
            if not self.section.webhook.url:
                return "recorded (no action configured)"
            return post_json(self.section.webhook, payload, key, "webhook")
        link = self._link(function, arguments)
        if not self.section.webhook.url:
            return f"link {link}"
        payload = {"function": function, "arguments": arguments, "link": link, "id": key}
        return post_json(self.section.webhook, payload, key, "webhook") + f" link {link}"

    def perform_item(self, item) -> str:
        """`perform` for an outbox item: its id is the idempotency key."""
        return self.perform(item.function, item.arguments, item.id, item.dry_run)

    def send_email(self, arguments: dict, key: str) -> str:
        smtp = self.section.smtp
        if not smtp.host or not smtp.from_address:
            raise ActionFailed("actions.smtp.host and actions.smtp.from_address must be set", retryable=False)
        try:
            password = read_secret(smtp.password_file, smtp.password_credential, "smtp")
        except ConfigError as exc:
            raise ActionFailed(str(exc), retryable=False) from None
        message = EmailMessage()
        message["From"] = smtp.from_address
        message["To"] = arguments["recipient"]
        message["Subject"] = arguments["subject"]
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = f"<{key}@octopus.local>"  # the same on every retry of this outbox item
        message.set_content(arguments.get("body") or arguments["subject"])
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
                client.ehlo()
                if smtp.starttls:
                    context = ssl.create_default_context(cafile=smtp.ca_file or None)
                    client.starttls(context=context)  # raises SMTPNotSupportedError rather than sending in clear
                    client.ehlo()
                if smtp.username:
                    try:
                        client.login(smtp.username, password)
                    except UnicodeEncodeError:  # smtplib's message would show the character and its position
                        raise ActionFailed("smtp: the password has non-ASCII characters, which SMTP AUTH cannot "
                                           "send", retryable=False) from None
                client.send_message(message)
        except smtplib.SMTPNotSupportedError:
            raise ActionFailed(f"smtp: {smtp.host} does not offer STARTTLS (set starttls = false to allow "
                               "plain text)", retryable=False) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise ActionFailed(f"smtp: login refused ({exc.smtp_code})", retryable=False) from None
        except smtplib.SMTPResponseException as exc:
            raise ActionFailed(f"smtp: {exc.smtp_code} {exc.smtp_error!r}", retryable=exc.smtp_code < 500) from None
        except smtplib.SMTPRecipientsRefused:
            raise ActionFailed(f"smtp: recipient {arguments['recipient']!r} refused", retryable=False) from None
        except ssl.SSLCertVerificationError as exc:
            raise ActionFailed(f"smtp: TLS certificate not trusted ({exc.verify_message})", retryable=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ActionFailed(f"smtp: {smtp.host}:{smtp.port} unavailable ({exc})", retryable=True) from None
        return f"email sent to {arguments['recipient']} via {smtp.host}"


def handler_argv(template: list[str], arguments: dict) -> list[str]:
    """The handler's argv: each `{argument}` hole filled in its own element (an absent optional one: empty)."""
    return [re.sub(r"\{(\w+)\}", lambda m: str(arguments.get(m.group(1), "")), part) for part in template]


def run_handler(function: str, template: list[str], arguments: dict, key: str) -> str:
    """Run a user function's local handler without a shell: the arguments arrive as argv elements and, whole,
    as JSON in $OCTOPUS_CALL; $OCTOPUS_OUTBOX_ID is the idempotency key. Exit 0 is done, 75 is tried again."""
    argv = handler_argv(template, arguments)
    env = {**os.environ, "OCTOPUS_CALL": json.dumps({"function": function, "arguments": arguments},
                                                    ensure_ascii=False), "OCTOPUS_OUTBOX_ID": key}
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=HANDLER_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise ActionFailed(f"{function}: handler {argv[0]} does not exist", retryable=False) from None
    except PermissionError:
        raise ActionFailed(f"{function}: handler {argv[0]} is not executable", retryable=False) from None
    except subprocess.TimeoutExpired:
        raise ActionFailed(f"{function}: handler ran over {HANDLER_TIMEOUT_S:.0f} s", retryable=True) from None
    first = lambda text: (text.strip().splitlines() or [""])[0][:200]  # noqa: E731 - one line of its output
    if done.returncode != 0:
        raise ActionFailed(f"{function}: handler exited {done.returncode} {first(done.stderr)}".rstrip(),
                           retryable=done.returncode == EX_TEMPFAIL)
    return f"{function}: handler done {first(done.stdout)}".rstrip()
