"""Helpers for the fault tests: a delaying TCP proxy and a bounded concurrent /predict driver."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class DelayProxy:
    """localhost TCP proxy in front of the sidecar; `delay_s` > 0 holds back each response that long.

    A response is the first bytes from upstream after bytes went upstream (HTTP/1.1 without
    pipelining: one request at a time per connection), so keep-alive connections get one
    delay per response however fast the sidecar answers. Connections to a closed upstream
    are closed at once (like a killed sidecar behind a load balancer).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay_s = 0.0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        client.settimeout(None)
        awaiting_response = threading.Event()
        threading.Thread(target=self._pump, args=(client, upstream, awaiting_response, False), daemon=True).start()
        self._pump(upstream, client, awaiting_response, True)

    def _pump(self, source: socket.socket, target: socket.socket, awaiting_response: threading.Event,
              is_response: bool) -> None:
        try:
            while not self._stop.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if not is_response:
                    awaiting_response.set()
                elif awaiting_response.is_set():  # the first bytes of a response
                    awaiting_response.clear()
                    if self.delay_s > 0:
                        time.sleep(self.delay_s)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@dataclass
class Outcome:
    phase: str
    latency_s: float
    status: int  # -1: no HTTP answer at all
    overlay: bool
    warnings: list[str]


@dataclass
class LoadDriver:
    """`concurrency` threads POST /predict (Grad-CAM on) back to back until stopped or `max_requests`."""

    url: str
    image: Path
    concurrency: int = 3
    max_requests: int = 8000
    phase: str = "start"
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._data = self.image.read_bytes()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(self.concurrency)]

    def start(self) -> LoadDriver:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        return self.outcomes

    def run_phase(self, name: str, seconds: float) -> None:
        self.phase = name
        time.sleep(seconds)

    def _work(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                with self._lock:
                    if len(self.outcomes) >= self.max_requests:
                        return
                phase, start = self.phase, time.monotonic()
                try:
                    response = http.post(self.url + "/predict", files={"file": (self.image.name, self._data)})
                    body = response.json() if response.status_code == 200 else {}
                    outcome = Outcome(phase, time.monotonic() - start, response.status_code,
                                      body.get("gradcam_overlay") is not None, body.get("warnings", []))
                except (httpx.HTTPError, ValueError) as exc:
                    outcome = Outcome(phase, time.monotonic() - start, -1, False, [type(exc).__name__])
                if self.phase != phase:  # straddled a change: counted, but judged by no phase
                    outcome.phase = f"{phase}->{self.phase}"
                with self._lock:
                    self.outcomes.append(outcome)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))] if ordered else float("nan")
