#!/usr/bin/env python
"""Start the API (`python -m app.api`, as the image runs it) and the Grad-CAM sidecar (uvicorn) locally.

    python scripts/serve.py            # API on 127.0.0.1:8000, sidecar on 127.0.0.1:8001

Ctrl-C or SIGTERM stops both; if either exits on its own, the other is stopped too.
Defaults come from CXR_HOST, CXR_PORT, CXR_SIDECAR_PORT and CXR_MODEL_DIR.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STOP_GRACE_S = 10.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=env.get("CXR_HOST", "127.0.0.1"))
    parser.add_argument("--api-port", type=int, default=int(env.get("CXR_PORT", "8000")))
    parser.add_argument("--sidecar-port", type=int, default=int(env.get("CXR_SIDECAR_PORT", "8001")))
    parser.add_argument("--model-dir", default=env.get("CXR_MODEL_DIR", "models"))
    parser.add_argument("--log-level", default=env.get("CXR_LOG_LEVEL", "info").lower(),
                        choices=["debug", "info", "warning", "error"], help="of both services")
    return parser.parse_args(argv)


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Own session: a terminal's Ctrl-C reaches only us, and we stop the children in order.
    return subprocess.Popen([sys.executable, *command], cwd=REPO, env=env, start_new_session=True)


def _uvicorn(app: str, host: str, port: int, log_level: str, env: dict[str, str]) -> subprocess.Popen:
    return _start(["-m", "uvicorn", app, "--host", host, "--port", str(port), "--log-level", log_level], env)


def _api(host: str, port: int, log_level: str, env: dict[str, str]) -> subprocess.Popen:
    """The API as the image runs it: `python -m app.api`, CXR_WORKERS processes."""
    return _start(["-m", "app.api"], {**env, "CXR_HOST": host, "CXR_PORT": str(port), "CXR_LOG_LEVEL": log_level})


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = os.environ.copy()
    env["CXR_MODEL_DIR"] = str(args.model_dir)
    env["CXR_GRADCAM_URL"] = f"http://{args.host}:{args.sidecar_port}"
    env.setdefault("ORT_DISABLE_TELEMETRY", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    processes = [
        _uvicorn("app.sidecar.main:app", args.host, args.sidecar_port, args.log_level, env),
        _api(args.host, args.api_port, args.log_level, env),
    ]
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        while not stopping:
            exited = [p for p in processes if p.poll() is not None]
            if exited:
                code = exited[0].returncode or 1
                print(f"serve: {' '.join(exited[0].args[1:4])} exited with {exited[0].returncode}; stopping",
                      file=sys.stderr)
                break
            time.sleep(0.2)
    finally:
        _stop(processes)
    return code


if __name__ == "__main__":
    sys.exit(main())
