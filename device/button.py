"""The camera button: gpiozero `Button` events turned into gestures, "short" or "hold".

gpiozero's own `bounce_time` is passed on (the lgpio backend honours it), and presses closer together
than `bounce_ms` are also dropped here, because not every pin backend debounces (gpiozero's MockFactory
ignores `bounce_time`). A press that reaches `hold_s` fires "hold" at that moment; a release before that
fires "short". The callback runs on gpiozero's thread and must only hand the gesture on (the daemon's
queue of one decides whether it is taken or dropped). Knows nothing about cameras or models.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable

log = logging.getLogger(__name__)


class ButtonError(RuntimeError):
    """The button's pin cannot be opened; the message is one line."""


class GestureButton:
    def __init__(self, pin: int, on_gesture: Callable[[str], None], bounce_ms: int = 50, hold_s: float = 1.0,
                 pull_up: bool = True, pin_factory=None):
        try:
            from gpiozero import Button
        except ImportError:
            raise ButtonError("gpiozero is not installed (pip install gpiozero; on the Pi also python3-lgpio)") \
                from None
        self.on_gesture = on_gesture
        self.bounce_s = bounce_ms / 1000
        self._lock = threading.Lock()
        self._last_press = -float("inf")
        self._accepted = False  # the current press passed the debounce
        self._held = False  # and already fired "hold"
        try:
            with warnings.catch_warnings():  # gpiozero warns once per factory it falls back from
                warnings.simplefilter("ignore")
                self.button = Button(pin, pull_up=pull_up, bounce_time=self.bounce_s or None, hold_time=hold_s,
                                     pin_factory=pin_factory)
        except Exception as exc:  # BadPinFactory, GPIOPinInUse, PermissionError, ...
            raise ButtonError(f"button on GPIO {pin}: {type(exc).__name__}: {exc} (on a Pi: python3-lgpio and "
                              "the gpio group; elsewhere set [button] enabled = false)") from None
        self.button.when_pressed = self._pressed
        self.button.when_held = self._held_down
        self.button.when_released = self._released

    def _pressed(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._accepted = now - self._last_press >= self.bounce_s
            self._held = False
            if self._accepted:
                self._last_press = now
        if not self._accepted:
            log.debug("button bounce ignored")

    def _held_down(self) -> None:
        with self._lock:
            fire = self._accepted and not self._held
            self._held = True
        if fire:
            self.on_gesture("hold")

    def _released(self) -> None:
        with self._lock:
            fire = self._accepted and not self._held
            self._accepted = False
        if fire:
            self.on_gesture("short")

    def close(self) -> None:
        self.button.close()
