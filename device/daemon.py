"""The device daemon: button or endpoint → capture → the answer step (device/answer.py) → outbox → action.

Threads and what each owns:
- the worker owns the camera and the model: it takes one request at a time from a queue of one, so a press
  while it is busy is logged and dropped, never queued behind a slow inference;
- the sender owns delivery: it drains the persistent outbox, retrying with backoff;
- gpiozero's thread and the query endpoint's threads only hand requests to the worker;
- the main thread handles signals and systemd: READY=1 after the model has loaded and answered a warm-up
  request, WATCHDOG=1 only while a health check of the worker and sender passes, STATUS= after each
  request, STOPPING=1 on SIGTERM, after which the current request finishes and nothing queued is lost.
Torch-free, like the rest of `octopus.device`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import signal
import threading
import time
from collections import deque

from PIL import Image

from octopus.device import sd_notify
from octopus.device.actions import Actions
from octopus.device.answer import AnswerStep
from octopus.device.camera import CameraError, open_camera
from octopus.device.config import Config
from octopus.device.outbox import Outbox
from octopus.device.query_server import serve
from octopus.device.requests import Busy, Request
from octopus.prompt import QueryError

log = logging.getLogger("octopus.daemon")
class Daemon:
    def __init__(self, config: Config, agent=None, camera=None, pin_factory=None):
        self.config = config
        self.agent, self.camera, self.pin_factory = agent, camera, pin_factory
        self.actions: Actions | None = None  # built in start(): it reads the model's function table
        self.outbox: Outbox | None = None
        self.answer: AnswerStep | None = None  # built in start(), once the model and the outbox are open
        self.outbox_error: str | None = None  # the last enqueue the disk refused (cleared by the next success)
        self.requests: queue.Queue[Request] = queue.Queue(maxsize=1)
        self.stopping = threading.Event()
        self.wake_sender = threading.Event()
        self.busy_since: float | None = None
        self.worker_beat = time.monotonic()
        self.pending_query: tuple[str, float] | None = None
        self.counts = {"requests": 0, "dropped": 0, "errors": 0}
        self.latencies_ms: deque[float] = deque(maxlen=1000)
        self.recent: deque[dict] = deque(maxlen=20)
        self.button = self.server = None
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopped = False

    # --- start and stop -------------------------------------------------------------------------------
    def start(self) -> None:
        sd_notify.notify("STATUS=loading the model")
        if self.agent is None:  # onnxruntime is loaded only here: tests and tools hand in their own agent
            from octopus.device.runtime import OnnxAgent

            model = self.config.model
            self.agent = OnnxAgent(model.path, precision=model.precision, threads=model.threads or None)
        self.agent.generate(Image.new("RGB", (64, 64)), "warm up", max_new_tokens=2)
        if self.camera is None:
            self.camera = open_camera(self.config.camera)
        state = self.config.state_dir()
        self.outbox = Outbox.from_config(self.config)
        self.answer = AnswerStep.from_config(self.agent, self.outbox, self.config)
        self.actions = self.answer.actions
        for name, target in (("worker", self._worker_loop), ("sender", self._sender_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)
        if self.config.button.enabled:  # gpiozero only where a button is configured (not on a laptop)
            from octopus.device.button import GestureButton

            b = self.config.button
            self.button = GestureButton(b.pin, self.press, b.bounce_ms, b.hold_s, b.pull_up, self.pin_factory)
        if self.config.queries.listen:
            self.server = serve(self.config.queries.listen, self)
        log.info("ready: model %s (%s), camera %s, state %s, %s", self.config.model.path,
                 getattr(self.agent, "precision", "?"), self.config.camera.kind, state,
                 "EXECUTING actions" if self.config.actions.execute else "dry run")
        sd_notify.notify("READY=1\nSTATUS=ready" + (f"; outbox: {self.outbox.problem}" if self.outbox.problem else ""))

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.stopping.set()
        sd_notify.notify("STOPPING=1\nSTATUS=stopping")
        log.info("stopping: finishing the current request")
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.button is not None:
            self.button.close()
        self.wake_sender.set()
        for thread in self.threads:
            thread.join(timeout=self.config.daemon.max_inference_s)
        if self.camera is not None:
            self.camera.close()
        if self.outbox is not None:
            counts = self.outbox.counts()
            log.info("stopped; outbox: %d pending, %d failed (kept for the next start)", counts["pending"],
                     counts["failed"])
            self.outbox.close()

    def run(self) -> int:
        """Start, then serve until SIGTERM/SIGINT, pinging the watchdog while healthy."""
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        self.start()
        interval = sd_notify.watchdog_interval_s()
        try:
            while not self.stopping.wait(min(interval or 5.0, 5.0)):
                ok, reason = self.healthy()
                if ok:
                    if interval:
                        sd_notify.notify("WATCHDOG=1")
                else:
                    log.error("unhealthy (%s): withholding the watchdog ping", reason)
        finally:
            self.stop()
        return 0

    # --- requests -------------------------------------------------------------------------------------
    def press(self, gesture: str) -> None:
        """gpiozero's callback: hand the gesture on, or drop it when busy."""
        try:
            self.submit(Request(gesture, source="button"))
        except Busy:
            log.info("button %s dropped: busy with the previous request", gesture)

    def set_query(self, text: str) -> None:
        self.pending_query = (text.strip(), time.monotonic())
        log.info("query set for the next press: %r", self.pending_query[0])

    def submit(self, request: Request) -> Request:
        """Queue of one: refused with Busy while a request is waiting or running."""
        with self._lock:
            if self.stopping.is_set():
                raise Busy("stopping")
            if self.busy_since is not None:  # waiting or running: busy until the worker is done with it
                self.counts["dropped"] += 1
                raise Busy("busy")
            self.busy_since = time.monotonic()
            request.future = concurrent.futures.Future()
            self.requests.put_nowait(request)
        return request

    def _query_for(self, request: Request) -> str:
        if request.query:
            return request.query
        if self.pending_query is not None:
            text, at = self.pending_query
            self.pending_query = None
            if time.monotonic() - at <= self.config.queries.pending_ttl_s:
                return text
            log.info("the posted query %r expired", text)
        return self.config.queries.hold if request.gesture == "hold" else self.config.queries.short_press

    def _worker_loop(self) -> None:
        while not self.stopping.is_set():
            self.worker_beat = time.monotonic()
            try:
                request = self.requests.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                result = self.handle(request)
            except Exception as exc:  # the worker must outlive one bad request
                log.exception("request failed")
                self.counts["errors"] += 1
                result = {"error": f"{type(exc).__name__}: {exc}"}
            with self._lock:
                self.busy_since = None
            request.future.set_result(result)

    def handle(self, request: Request) -> dict:
        start = time.perf_counter()
        query = self._query_for(request)
        result: dict = {"n": self.counts["requests"] + 1, "gesture": request.gesture, "source": request.source,
                        "query": query}
        self.counts["requests"] += 1
        try:
            image = self.camera.capture()
        except CameraError as exc:
            self.counts["errors"] += 1
            log.error("%s", exc)
            return {**result, "error": str(exc)}
        try:
            record = self.answer(image, query, f"{request.source}:{request.gesture}")
        except QueryError as exc:  # a request the agent cannot take: one line, not a traceback
            self.counts["errors"] += 1
            log.error("%s", exc)
            return {**result, "error": str(exc)}
        result.update(record)
        if record.get("not_queued"):  # disk full or read-only: the answer is shown, nothing is queued
            self.counts["errors"] += 1
            self.outbox_error = record["error"]
            log.error("%s %r -> %s %s NOT queued: %s", request.gesture, query, record["function"],
                      record["arguments"], record["error"])
            sd_notify.notify(f"STATUS=outbox refused work: {record['error']}")
            self.recent.append(result)
            return result
        if "outbox_id" in record:
            self.outbox_error = None
            self.wake_sender.set()
        total = (time.perf_counter() - start) * 1e3
        result["total_ms"] = round(total, 1)
        self.latencies_ms.append(total)
        self.recent.append(result)
        log.info("%s %r -> %s %s (%.0f ms)", request.gesture, query, record["function"], record["arguments"], total)
        sd_notify.notify(f"STATUS=ready; {self.counts['requests']} requests; last {record['function']} "
                         f"in {total:.0f} ms")
        return result

    # --- delivery -------------------------------------------------------------------------------------
    def _sender_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.outbox.deliver_due(self.actions.perform_item)
                due = self.outbox.next_due()
            except Exception:  # a locked or broken database: log, wait, try again
                log.exception("outbox delivery failed")
                due = None
            timeout = 30.0 if due is None else min(30.0, max(0.05, due - time.time()))
            self.wake_sender.wait(timeout)
            self.wake_sender.clear()

    # --- health ---------------------------------------------------------------------------------------
    def healthy(self) -> tuple[bool, str]:
        if len(self.threads) < 2 or not all(t.is_alive() for t in self.threads):
            return False, "a worker thread has died"
        now = time.monotonic()
        busy_since = self.busy_since
        if busy_since is not None and now - busy_since > self.config.daemon.max_inference_s:
            return False, f"inference running for {now - busy_since:.0f} s"
        if busy_since is None and now - self.worker_beat > 10:
            return False, "the worker stopped taking requests"
        if self.server is not None and hasattr(self.server, "accepting"):
            return self.server.accepting()
        return True, "ok"

    def status(self) -> dict:
        latencies = sorted(self.latencies_ms)
        ok, reason = self.healthy()
        return {"healthy": ok, "health": reason, "busy": self.busy_since is not None, **self.counts,
                "p50_ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
                "p95_ms": round(latencies[int(len(latencies) * 0.95)], 1) if latencies else None,
                "pending_query": self.pending_query[0] if self.pending_query else None,
                "execute": self.config.actions.execute,
                "outbox": self.outbox.counts() if self.outbox else {}, "outbox_problem": self.outbox_problem(),
                "recent": list(self.recent)[-5:]}

    def outbox_problem(self) -> str | None:
        """Why the outbox needs a look: it refused the last action, was moved aside at start, or holds sent
        items whose status the disk refused."""
        if self.outbox is None:
            return None
        notes = [n for n in (self.outbox_error, self.outbox.problem) if n]
        if self.outbox.unrecorded:
            notes.append(f"{len(self.outbox.unrecorded)} item(s) sent but not yet recorded as sent")
        return "; ".join(notes) or None
