"""Cameras: something with `capture() -> PIL.Image (RGB)` and `close()`.

- `Picamera2Camera`: the Raspberry Pi camera through picamera2 (imported lazily: it comes from Raspberry Pi
  OS's apt, not PyPI). A still configuration at a small size; picamera2's "RGB888" is B, G, R in memory,
  so the channels are reversed before they reach the model.
- `FileCamera`: an image file, or a folder whose newest image is the frame (another program, a phone sync or
  a test drops frames there).
- `V4L2Camera`: other boards and USB webcams, one frame through ffmpeg's v4l2 input.
Every failure is a `CameraError` with one line. Knows nothing about models.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
from pathlib import Path

from PIL import Image

from octopus.preprocess import ImageError, load_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class CameraError(RuntimeError):
    """A frame that could not be captured; the message is one line."""


class FileCamera:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise CameraError(f"file camera: {self.path} does not exist")

    def frame_path(self) -> Path:
        if self.path.is_file():
            return self.path
        frames = [p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not frames:
            raise CameraError(f"file camera: no image in {self.path}")
        return max(frames, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def capture(self) -> Image.Image:
        try:
            return load_image(self.frame_path())
        except (ImageError, OSError) as exc:
            raise CameraError(f"file camera: {exc}") from None

    def close(self) -> None:
        pass


class Picamera2Camera:
    def __init__(self, width: int, height: int):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise CameraError("picamera2 is not installed (on Raspberry Pi OS: apt install python3-picamera2, "
                              "and a venv with --system-site-packages)") from None
        try:
            self.camera = Picamera2()
            config = self.camera.create_still_configuration(main={"size": (width, height), "format": "RGB888"})
            self.camera.configure(config)
            self.camera.start()
        except Exception as exc:  # libcamera raises RuntimeError/IndexError when no camera is attached
            raise CameraError(f"picamera2: cannot open the camera ({exc})") from None
        self.lock = threading.Lock()

    def capture(self) -> Image.Image:
        with self.lock:
            try:
                frame = self.camera.capture_array("main")  # (H, W, 3) B, G, R
            except Exception as exc:
                raise CameraError(f"picamera2: capture failed ({exc})") from None
        return Image.fromarray(frame[..., ::-1].copy(), "RGB")

    def close(self) -> None:
        self.camera.close()


class V4L2Camera:
    def __init__(self, device: str, width: int, height: int, ffmpeg: str | None = None):
        self.device, self.width, self.height = device, width, height
        self.ffmpeg = ffmpeg or shutil.which("ffmpeg")
        if not Path(device).exists():
            raise CameraError(f"v4l2: no device at {device}")
        if not self.ffmpeg:
            raise CameraError("v4l2: ffmpeg is not installed (apt install ffmpeg)")

    def command(self) -> list[str]:
        return [self.ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "v4l2",
                "-video_size", f"{self.width}x{self.height}", "-i", self.device,
                "-frames:v", "1", "-f", "image2pipe", "-vcodec", "png", "-"]

    def capture(self) -> Image.Image:
        try:
            out = subprocess.run(self.command(), capture_output=True, timeout=15)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CameraError(f"v4l2: {exc}") from None
        if out.returncode != 0 or not out.stdout:
            message = out.stderr.decode(errors="replace").strip().splitlines()
            raise CameraError(f"v4l2: capture from {self.device} failed ({message[-1] if message else out.returncode})")
        return Image.open(io.BytesIO(out.stdout)).convert("RGB")

    def close(self) -> None:
        pass


def open_camera(section) -> FileCamera | Picamera2Camera | V4L2Camera:
    """The camera a `[camera]` config section describes."""
    if section.kind == "file":
        return FileCamera(section.path)
    if section.kind == "v4l2":
        return V4L2Camera(section.device, section.width, section.height)
    return Picamera2Camera(section.width, section.height)
