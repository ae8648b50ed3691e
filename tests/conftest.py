"""Shared fixtures: tiny random agents built locally (nothing downloaded) and real images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session", autouse=True)
def state_home(tmp_path_factory):
    """Every `octopus ask` records its answer in an outbox: the tests' go to a folder of their own (the
    programs they start inherit it), never to the user's ~/.local/state/octopus."""
    folder = tmp_path_factory.mktemp("xdg_state")
    old = {k: os.environ.get(k) for k in ("XDG_STATE_HOME", "STATE_DIRECTORY")}
    os.environ["XDG_STATE_HOME"] = str(folder)
    os.environ.pop("STATE_DIRECTORY", None)
    yield folder
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# The small generated dataset the data, grounding, training and distributed tests read: one build serves the
# whole session (tests only read it; `data stats` adds its contact sheet).
SMALL_DATA = dict(n_per_function=10, test_fraction=0.3, captions_per_concept=1, clip_val_per_concept=1,
                  diagnostic_per_function=2)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    from octopus.training.data.build import BuildConfig, build

    out = tmp_path_factory.mktemp("small-data")
    build(out, BuildConfig(**SMALL_DATA))
    return out


@pytest.fixture(scope="session")
def packaged_trunk_agent():
    """Build a tiny LM over the packaged ImageNet EfficientNet-Lite0 (the shipped default's image tower), name
    slots over the concept table, `projector.slot_imagenet` at the threshold given."""
    torch = pytest.importorskip("torch")
    from octopus.model.agent import OctopusAgent
    from octopus.model.config import VisionConfig
    from octopus.model.presets import tiny
    from octopus.training.data.concepts import CONCEPTS

    def build(threshold: float) -> OctopusAgent:
        config = tiny().override('projector.name_slots={"en": 3}')
        config.vision = VisionConfig(model="octopus-effnet-lite0", pretrained="efficientnet-lite0-imagenet",
                                     image_size=224, mean=[0.5] * 3, std=[0.5] * 3)
        config.projector.names = [{"en": c.en, "zh": c.zh} for c in CONCEPTS]
        config.projector.slot_imagenet = threshold
        torch.manual_seed(0)
        return OctopusAgent.build(config).eval()
    return build


EXAMPLES = Path(__file__).parents[1] / "model" / "default" / "examples"


@pytest.fixture(scope="session")
def cat_photo_and_icon() -> tuple[Path, Path]:
    """A real photograph (the demo's cat) and a rendered icon scene (an alarm clock), from the shipped examples."""
    return EXAMPLES / "photo_cat.jpg", EXAMPLES / "image_en_amazon_shopping.jpg"


@pytest.fixture(scope="session")
def tiny_agent():
    torch = pytest.importorskip("torch")
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import tiny

    torch.manual_seed(0)
    return OctopusAgent.build(tiny()).eval()


@pytest.fixture
def photo() -> Image.Image:
    """A photo-like RGB image (smooth gradients plus noise), not square, so resize and crop matter."""
    rng = np.random.default_rng(0)
    h, w = 61, 97
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], -1)
    noisy = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB")


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """A tiny random agent exported to ONNX (fp32 + int8): what the device runs, in 2 seconds."""
    torch = pytest.importorskip("torch")
    from octopus.exporters.onnx_export import export
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import tiny

    root = tmp_path_factory.mktemp("tiny-onnx")
    torch.manual_seed(0)
    OctopusAgent.build(tiny()).save(root / "agent")
    export(root / "agent", root / "onnx", int8=True)
    return root / "onnx"


def make_bad_images(tmp_path: Path) -> dict[str, Path]:
    """Files no image reader should take (each must be a one-line error): cut, not an image, empty, over the
    size limit, a decompression bomb, missing. Shared by the tests and bench/redteam.py."""
    bad = {"corrupt": tmp_path / "corrupt.jpg", "text": tmp_path / "notes.png", "empty": tmp_path / "empty.png",
           "huge": tmp_path / "huge.jpg", "bomb": tmp_path / "bomb.png", "missing": tmp_path / "missing.png"}
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(good)
    bad["corrupt"].write_bytes(good.read_bytes()[:40])
    bad["text"].write_text("this is not an image\n")
    bad["empty"].write_bytes(b"")
    with open(bad["huge"], "wb") as f:  # 60 MB, sparse: over the size limit without using the disk
        f.truncate(60_000_000)
    Image.new("1", (12_000, 8_000)).save(bad["bomb"])  # 96 Mpixels in a few kB
    return bad


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    """A real SMTP server (aiosmtpd) on loopback with STARTTLS from a test CA, optionally with a login."""

    def __init__(self, ca, ca_file, require_tls: bool = True, password: str | None = None, stall_rcpt=None,
                 port: int | None = None):
        import ssl
        import threading

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list = []
        self.rcpt_seen = threading.Event()
        self.ca_file = ca_file
        cert = ca.issue_cert("127.0.0.1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        server = self

        class Handler:
            async def handle_RCPT(self, smtp, session, envelope, address, options):
                import asyncio

                server.rcpt_seen.set()
                while stall_rcpt is not None and not stall_rcpt.is_set():
                    await asyncio.sleep(0.02)
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, smtp, session, envelope):
                from email import message_from_bytes

                server.messages.append(message_from_bytes(envelope.content))
                return "250 Message accepted for delivery"

        def authenticate(smtp, session, envelope, mechanism, auth_data):
            ok = auth_data.login == b"octopus" and auth_data.password == password.encode()
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd replies 535 itself

        self.port = port or free_port()
        kwargs = {"tls_context": context, "require_starttls": require_tls} if require_tls else {}
        if password is not None:
            kwargs.update(authenticator=authenticate, auth_required=True)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


class SmtpServers:
    """Starts SMTP servers that share one test CA (`ca_file`), so a client config outlives a server."""

    def __init__(self, tmp_path):
        import trustme

        self.ca = trustme.CA()
        self.ca_file = tmp_path / "smtp-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.servers: list[SmtpServer] = []

    def __call__(self, **kwargs) -> SmtpServer:
        self.servers.append(SmtpServer(self.ca, self.ca_file, **kwargs))
        return self.servers[-1]


@pytest.fixture
def smtp_server(tmp_path):
    servers = SmtpServers(tmp_path)
    yield servers
    for s in servers.servers:
        s.stop()


EMAIL_CALL = '<nexa_0>(recipient="ann@example.com", subject="the bottle")<nexa_end>'
EMAIL_QUERY = "email ann@example.com about the bottle"  # an email's arguments are copied from the request


@pytest.fixture(scope="session")
def email_onnx(tmp_path_factory):
    """A tiny agent taught one answer (EMAIL_QUERY about a gray frame -> EMAIL_CALL), exported: a real model
    whose output is known, so tests can follow a call from the camera to a real SMTP server."""
    torch = pytest.importorskip("torch")
    from octopus.exporters.onnx_export import export
    from octopus.model.agent import OctopusAgent
    from octopus.model.presets import tiny

    torch.manual_seed(0)
    agent = OctopusAgent.build(tiny()).train()
    prompt, target = agent.encode_prompt(EMAIL_QUERY), agent.encode_target(EMAIL_CALL)
    ids = torch.tensor([prompt + target])
    labels = torch.tensor([[-100] * len(prompt) + target])
    with torch.no_grad():
        image_embeds = agent.image_embeds(agent.pixels(Image.new("RGB", (48, 48), (128, 128, 128))))
    optimizer = torch.optim.Adam(agent.lm.parameters(), lr=1e-2)
    for _ in range(400):
        loss = agent(ids, image_embeds=image_embeds, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 2e-3:
            break
    agent.eval()
    root = tmp_path_factory.mktemp("email-onnx")
    agent.save(root / "agent")
    export(root / "agent", root / "onnx", int8=True)
    return root / "onnx"


class ChatServer:
    """A real OpenAI-compatible `/chat/completions` endpoint on loopback (the reward model's and the data
    verifier's protocol). `respond(body)` gives the assistant's text, or None for an HTTP 500; every request is
    kept as (path, Authorization header, body). Use as a context manager; `url` ends in /v1."""

    def __init__(self, respond):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, str | None, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, self.headers.get("Authorization"), body))
                answer = respond(body)
                if answer is None:
                    self.send_response(500)
                    self.end_headers()
                    return
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
