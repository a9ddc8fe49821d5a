"""The HTTP load generator: closed-loop asyncio clients, bounded in count and in time.

Each of `concurrency` clients keeps one HTTP/1.1 keep-alive connection and sends the
next request as soon as the previous answer is read, until `requests` have been sent
or `max_seconds` have passed. Requests are multipart uploads of the 16 X-rays, built
once up front and written raw, so the generator spends little CPU (its own CPU time is
reported: on a 2-core machine the client shares the cores with the server). Every
answer is checked: HTTP 200, JSON with a label and, when Grad-CAM was asked for, an
overlay; anything else counts as an error.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

from benchmarks.common import summarize_ms


def multipart_request(host: str, port: int, path: str, filename: str, data: bytes) -> bytes:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: cxr-bench\r\nAccept: application/json\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


@dataclass
class LoadResult:
    name: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(message[:200])

    def summary(self) -> dict:
        done = len(self.latencies)
        stats = summarize_ms(self.latencies)
        return {
            "name": self.name, "concurrency": self.concurrency, "requests": done + self.errors, "ok": done,
            "errors": self.errors, "error_samples": self.error_samples, "wall_s": self.wall_s,
            "throughput_rps": done / self.wall_s if self.wall_s > 0 else 0.0,
            "p50_ms": stats["median"], "p95_ms": stats["p95"], "p99_ms": stats["p99"], "mean_ms": stats["mean"],
            "client_cpu_pct": 100.0 * self.client_cpu_s / self.wall_s if self.wall_s > 0 else 0.0,
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length, close, chunked = 0, False, False
    for line in lines[1:]:
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip().lower()
        if key == "content-length":
            length = int(value)
        elif key == "connection" and value == "close":
            close = True
        elif key == "transfer-encoding" and "chunked" in value:
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(length)
    return status, body, close


def _check(status: int, body: bytes, want_overlay: bool) -> str | None:
    if status != 200:
        return f"HTTP {status}: {body[:120]!r}"
    try:
        payload = json.loads(body)
    except ValueError:
        return "response is not JSON"
    if payload.get("label") not in ("PNEUMONIA", "NORMAL"):
        return "no label in the response"
    if want_overlay and not payload.get("gradcam_overlay"):
        return "no Grad-CAM overlay: " + "; ".join(payload.get("warnings", []))[:150]
    return None


def _run_loop(coroutine) -> None:
    """On uvloop when it is installed (it is, with uvicorn[standard]): the generator shares the
    cores with the server, and uvloop cost 0.33 vs 0.39 ms of its CPU per /predict at concurrency 16."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


async def _run(host: str, port: int, requests: list[bytes], total: int, concurrency: int, max_seconds: float,
               want_overlay: bool, result: LoadResult, timeout_s: float) -> None:
    counter = iter(range(total))
    deadline = time.perf_counter() + max_seconds

    async def client(offset: int) -> None:
        reader = writer = None
        try:
            for index in counter:
                if time.perf_counter() > deadline:
                    break
                payload = requests[(index + offset) % len(requests)]
                start = time.perf_counter()
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, port)
                    writer.write(payload)
                    async with asyncio.timeout(timeout_s):
                        status, body, close = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError) as exc:
                    result.error(f"{type(exc).__name__}: {exc}")
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    continue
                elapsed = time.perf_counter() - start
                problem = _check(status, body, want_overlay)
                if problem:
                    result.error(problem)
                else:
                    result.latencies.append(elapsed)
                if close:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(client(i * 5) for i in range(concurrency)))


def run_load(name: str, url_host: str, port: int, path: str, uploads: list[tuple[str, bytes]], *,
             concurrency: int, requests: int, max_seconds: float, warmup: int = 8,
             want_overlay: bool = False, timeout_s: float = 30.0, on_start=None) -> dict:
    """Warm up (not counted), then one measured closed-loop run; returns its summary.

    `on_start`, if given, is called just before the measured run (to snapshot server counters).
    """
    payloads = [multipart_request(url_host, port, path, fname, data) for fname, data in uploads]
    if warmup:
        scratch = LoadResult(name, concurrency)
        _run_loop(_run(url_host, port, payloads, warmup, min(concurrency, warmup), 60.0, want_overlay,
                         scratch, timeout_s))
    result = LoadResult(name, concurrency)
    if on_start is not None:
        on_start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    _run_loop(_run(url_host, port, payloads, requests, concurrency, max_seconds, want_overlay, result, timeout_s))
    result.wall_s = time.perf_counter() - wall0
    result.client_cpu_s = time.process_time() - cpu0
    return result.summary()
