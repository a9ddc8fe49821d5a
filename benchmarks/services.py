"""The services under test as real subprocesses on free localhost ports; peak RSS from /proc.

`Services` is a context manager: whatever happens inside (a failed start, an error in
the load run, Ctrl-C), every process it started is stopped on the way out.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

from benchmarks.common import app_root, bench_env

STOP_GRACE_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status_kb(pid: int, field: str) -> int | None:
    """A `VmHWM`/`VmRSS` line of /proc/<pid>/status in kB (None if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def child_pids(pid: int) -> list[int]:
    """Direct and indirect children (the HTTP servers fork their workers)."""
    out, queue = [], [pid]
    while queue:
        current = queue.pop()
        try:
            text = Path(f"/proc/{current}/task/{current}/children").read_text()
        except FileNotFoundError:
            continue
        kids = [int(p) for p in text.split()]
        out.extend(kids)
        queue.extend(kids)
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children so far (/proc/<pid>/stat), in seconds."""
    import os

    total = 0.0
    for one in [pid, *child_pids(pid)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rpartition(")")[2].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Service:
    def __init__(self, name: str, app: str, port: int, env: dict[str, str], log_dir: Path,
                 health_path: str = "/health", extra_args: tuple[str, ...] = (), launcher: str | None = None,
                 root: Path | None = None) -> None:
        self.name, self.port, self.health_path = name, port, health_path
        self.url = f"http://127.0.0.1:{port}"
        self.log = log_dir / f"{name}.log"
        if launcher:  # as the image runs it (Dockerfile CMD `python -m app.api`), workers and all
            command = [sys.executable, "-m", launcher]
            env = {**env, "CXR_HOST": "127.0.0.1", "CXR_PORT": str(port)}
        else:
            command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
                       "--no-server-header", *extra_args]
        self._log_handle = open(self.log, "wb")
        self.process = subprocess.Popen(command, cwd=root or app_root(), env=env, stdout=self._log_handle,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_healthy(self, timeout_s: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = httpx.get(self.url + self.health_path, timeout=2.0)
                if response.status_code == 200:
                    return response.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not healthy after {timeout_s:.0f} s:\n{self.log_tail()}")

    def _peak_rss_kb(self) -> list[int]:
        """Peak resident set (VmHWM) of the process and of each process it forked (its workers)."""
        values = [proc_status_kb(pid, "VmHWM") for pid in [self.pid, *child_pids(self.pid)]]
        return [v for v in values if v is not None]

    def peak_rss_mb(self) -> float | None:
        """Of the process, or of its largest worker if it forked any."""
        values = self._peak_rss_kb()
        return max(values) / 1024.0 if values else None

    def peak_rss_total_mb(self) -> float | None:
        """All its processes together."""
        values = self._peak_rss_kb()
        return sum(values) / 1024.0 if values else None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_mb(self) -> float | None:
        value = proc_status_kb(self.pid, "VmRSS")
        return value / 1024.0 if value is not None else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_handle.close()


class Services(AbstractContextManager):
    """Start services; every one of them is stopped when the block exits, however it exits."""

    def __init__(self) -> None:
        self.log_dir = Path(tempfile.mkdtemp(prefix="cxr-bench-"))
        self.started: list[Service] = []

    def start(self, name: str, app: str, env: dict[str, str], root: Path | None = None, **kwargs) -> Service:
        """`root`: the checkout whose code the service runs (default: `app_root()`)."""
        service = Service(name, app, free_port(), bench_env(root, **env), self.log_dir, root=root, **kwargs)
        self.started.append(service)
        return service

    def __exit__(self, *exc_info) -> None:
        for service in reversed(self.started):
            service.stop()
        self.started.clear()
