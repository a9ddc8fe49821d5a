#!/usr/bin/env bash
# Install Debian's chromium and its WebDriver for the web page test (tests/integration/test_web_page.py).
# Idempotent: does nothing when both are on PATH. Without root (and no sudo) it only says
# so; the browser test then skips with that reason.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "install-browser: not root and no passwordless sudo; the browser test will be skipped" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: no apt-get here; install chromium and chromedriver yourself" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "install-browser: $(chromium --version 2>/dev/null || echo chromium) installed"
